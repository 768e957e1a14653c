export type { ErrorCode } from '../../shared/src/errors.ts';
export type { IceServer } from '../../shared/src/ice.ts';
export type {
  CreatedRoom,
  JoinRoomRequest,
  JoinRoomResponse,
  ParticipantDetails,
  Publisher,
  RoomDetails,
  Stream,
  StreamKind,
} from '../../shared/src/rest.ts';
export type { Participant, ServerFrame } from '../../shared/src/signaling.ts';
export { CLOSE_CODES, SIGNALING_SUBPROTOCOL } from '../../shared/src/signaling-socket.ts';
export type { Grants } from '../../shared/src/token.ts';
export type { RoomAdminOptions } from './room-admin.ts';
export { RoomAdmin, RoomAdminError } from './room-admin.ts';
export type {
  ConnectionEvents,
  ConnectionState,
  ReconnectPolicy,
  SignalingConnectionOptions,
} from './signaling-connection.ts';
export { DEFAULT_RECONNECT, SignalingConnection, SignalingError } from './signaling-connection.ts';
export type { TokenKeeperOptions } from './token-keeper.ts';
export { TokenKeeper } from './token-keeper.ts';
export type {
  ActiveSpeaker,
  ClientEvents,
  JoinOptions,
  PublishOptions,
  RemoteTrack,
  SendDataOptions,
} from './truegather-client.ts';
export { TrueGatherClient } from './truegather-client.ts';
