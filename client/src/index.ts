export { CLOSE_CODES, SIGNALING_SUBPROTOCOL } from '../../shared/src/signaling-socket.ts';
export type { ConnectionState, ReconnectPolicy } from './signaling-connection.ts';
export { DEFAULT_RECONNECT, SignalingConnection, SignalingError } from './signaling-connection.ts';
export { TokenKeeper } from './token-keeper.ts';
export type { ClientEvents, JoinOptions, RemoteTrack } from './truegather-client.ts';
export { TrueGatherClient } from './truegather-client.ts';
