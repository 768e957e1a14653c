export type { ConnectionState, ReconnectPolicy } from './signaling-connection.ts';
export {
  DEFAULT_RECONNECT,
  SIGNALING_SUBPROTOCOL,
  SignalingConnection,
  SignalingError,
} from './signaling-connection.ts';
export { TokenKeeper } from './token-keeper.ts';
export type { ClientEvents, JoinOptions, RemoteTrack } from './truegather-client.ts';
export { TrueGatherClient } from './truegather-client.ts';
