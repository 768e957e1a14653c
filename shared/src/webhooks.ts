import { z } from 'zod';
import { ParticipantIdSchema, RoomIdSchema } from './ids.ts';
import { LIMITS } from './limits.ts';
import { StreamKindSchema, StreamSchema } from './rest.ts';

/**
 * Webhooks: events pushed to the app's server (`WEBHOOK_URL`), signed per the Standard Webhooks
 * specification (`webhook-id`, `webhook-timestamp`, `webhook-signature`) with `WEBHOOK_SECRET`, so
 * receivers verify them with the `standardwebhooks` package in any language. Delivered at least
 * once: a receiver may see an event twice (same `webhook-id`) and out of order; `data.seq` numbers
 * a room's events so that it can put them back in order.
 */
export const WEBHOOK_EVENT_TYPES = [
  'room.started',
  'room.finished',
  'participant.joined',
  'participant.left',
  'track.published',
  'track.unpublished',
  'track.muted',
] as const;
export const WebhookEventTypeSchema = z.enum(WEBHOOK_EVENT_TYPES);
export type WebhookEventType = z.infer<typeof WebhookEventTypeSchema>;

const WebhookParticipantSchema = z.object({ id: ParticipantIdSchema, display: z.string().max(LIMITS.displayMaxChars) });

export const WebhookDataSchema = z.object({
  room_id: RoomIdSchema,
  /** The room's events are numbered 1, 2, 3 … in the order the room produced them. */
  seq: z.number().int().min(1),
  /** The participant concerned (participant.* and track.*). */
  participant: WebhookParticipantSchema.optional(),
  /** The tracks concerned (track.published / track.unpublished). */
  streams: z.array(StreamSchema).max(8).optional(),
  /** track.muted: which kind, its state, and who changed it. */
  kind: StreamKindSchema.optional(),
  muted: z.boolean().optional(),
  by: z.enum(['self', 'admin']).optional(),
  /** room.finished: why (`room_empty`, `room_expired`, `room_deleted`); participant.left: why it left. */
  reason: z.string().max(64).optional(),
});
export type WebhookData = z.infer<typeof WebhookDataSchema>;

/** The body POSTed to WEBHOOK_URL. */
export const WebhookEventSchema = z.object({
  type: WebhookEventTypeSchema,
  /** When the room produced the event (ISO 8601). */
  timestamp: z.iso.datetime(),
  data: WebhookDataSchema,
});
export type WebhookEvent = z.infer<typeof WebhookEventSchema>;

/** A queued delivery: the event and its id (`webhook-id`, the same on every retry). */
export const WebhookMessageSchema = z.object({ id: z.string().min(1).max(128), event: WebhookEventSchema });
export type WebhookMessage = z.infer<typeof WebhookMessageSchema>;
