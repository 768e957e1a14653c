export { CLOSE_CODES, SIGNALING_SUBPROTOCOL } from '../../shared/src/signaling-socket.ts';
export type { RoomAdminOptions } from './room-admin.ts';
export { RoomAdmin, RoomAdminError } from './room-admin.ts';
export type { ConnectionState, ReconnectPolicy } from './signaling-connection.ts';
export { DEFAULT_RECONNECT, SignalingConnection, SignalingError } from './signaling-connection.ts';
export { TokenKeeper } from './token-keeper.ts';
export type { ClientEvents, JoinOptions, RemoteTrack, SendDataOptions } from './truegather-client.ts';
export { TrueGatherClient } from './truegather-client.ts';
