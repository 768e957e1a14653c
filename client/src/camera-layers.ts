/**
 * The camera layers `publish()` offers, lowest first (the order the server falls back to when it
 * cannot read a layer's resolution). Bitrates as common SFU SDKs choose for 720p. Typed without the
 * DOM library so that Node code (the media benchmark's browser publisher) offers the same layers.
 */
export const CAMERA_SIMULCAST_ENCODINGS: readonly {
  rid: string;
  scaleResolutionDownBy?: number;
  maxBitrate: number;
}[] = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', maxBitrate: 1_500_000 },
];
