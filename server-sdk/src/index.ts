export type { WebhookData, WebhookEvent, WebhookEventType } from '../../shared/src/webhooks.ts';
export type { components, paths } from './generated/openapi.ts';
export type {
  AdminAuth,
  CreatedRoom,
  CreateRoomRequest,
  ErrorEnvelope,
  JoinRoomRequest,
  JoinRoomResponse,
  ParticipantDetails,
  ParticipantGrantsUpdate,
  RoomDetails,
  RoomServiceOptions,
  StreamKind,
} from './room-service.ts';
export { RoomService, TrueGatherApiError } from './room-service.ts';
export type { WebhookHeaders } from './webhook-receiver.ts';
export { WebhookReceiver, WebhookVerificationError } from './webhook-receiver.ts';
