import { createHmac } from 'node:crypto';
import {
  RTCPeerConnection,
  type RTCPeerConnectionConfig,
  RTCRtpCodecParameters,
  type RTCRtpHeaderExtensionParameters,
  useAbsSendTime,
  useAudioLevelIndication,
  useFIR,
  useNACK,
  usePLI,
  useREMB,
  useRepairedRtpStreamId,
  useSdesMid,
  useSdesRTPStreamId,
} from 'werift';
import type { RtcSettings } from './rtc-settings.ts';

/**
 * Codecs both legs support, with fixed payload types so that every m-line of a subscriber's
 * connection uses one consistent mapping. VP8 and Opus for every browser, H.264 for Safari (the
 * profiles Chrome and Safari offer). werift restricts each egress m-line to the codecs compatible
 * with its source track, so a subscriber is offered exactly the publisher's codec.
 */
function supportedCodecs(feedback: {
  video: () => ReturnType<typeof useNACK>[];
  audio: () => ReturnType<typeof useNACK>[];
}) {
  const video = (mimeType: string, payloadType: number, parameters?: string) => [
    new RTCRtpCodecParameters({ mimeType, clockRate: 90_000, payloadType, parameters, rtcpFeedback: feedback.video() }),
    new RTCRtpCodecParameters({
      mimeType: 'video/rtx',
      clockRate: 90_000,
      payloadType: payloadType + 1,
      parameters: `apt=${payloadType}`,
    }),
  ];
  const h264 = (profileLevelId: string) =>
    `level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=${profileLevelId}`;
  return {
    audio: [
      new RTCRtpCodecParameters({
        mimeType: 'audio/opus',
        clockRate: 48_000,
        channels: 2,
        payloadType: 111,
        parameters: 'minptime=10;useinbandfec=1',
        rtcpFeedback: feedback.audio(),
      }),
    ],
    video: [
      ...video('video/VP8', 96),
      ...video('video/H264', 102, h264('42e01f')),
      ...video('video/H264', 104, h264('42001f')),
      ...video('video/H264', 106, h264('4d001f')),
      ...video('video/H264', 108, h264('640c1f')),
    ],
  };
}

/**
 * Ingress: REMB is the bandwidth feedback the publisher's congestion control gets
 * (./bandwidth-feedback.ts). transport-cc is not negotiated: werift's transport-cc
 * feedback is malformed (its reference time and run lengths are wrong, and its 100 ms timer never
 * starts), and Chromium's estimate fell to 100–300 kbps on a clear link, too little for simulcast.
 * The RFC 6464 audio level on audio feeds the speaker detection (read by SourceTrack, not forwarded).
 */
const ingressCodecs = () =>
  supportedCodecs({
    video: () => [useNACK(), usePLI(), useFIR(), useREMB()],
    audio: () => [],
  });
const ingressHeaderExtensions = (): {
  audio: RTCRtpHeaderExtensionParameters[];
  video: RTCRtpHeaderExtensionParameters[];
} => ({
  audio: [useSdesMid(), useAbsSendTime(), useAudioLevelIndication()],
  // rid and repaired rid route simulcast layers and their retransmissions (RFC 8852).
  video: [useSdesMid(), useAbsSendTime(), useSdesRTPStreamId(), useRepairedRtpStreamId()],
});

/**
 * Egress: NACK (answered from the sender's history), PLI/FIR (relayed to the publisher, throttled).
 * No bandwidth estimation extensions: the forwarder cannot adapt a single-layer stream anyway. No
 * audio level either: the node keeps the publishers' levels to itself (`active_speakers` tells the
 * room who speaks), and the fast path writes the MID alone.
 */
const egressCodecs = () =>
  supportedCodecs({
    video: () => [useNACK(), usePLI(), useFIR()],
    audio: () => [],
  });
const egressHeaderExtensions = () => ({ audio: [useSdesMid()], video: [useSdesMid()] });

export type PeerRole = 'ingress' | 'egress';

/**
 * A werift peer connection with the node's network settings. The ICE server list is always passed
 * (empty when none is configured): werift's default is a public Google STUN server.
 */
export function createPeerConnection(
  settings: RtcSettings,
  role: PeerRole,
  portRange: [number, number],
): RTCPeerConnection {
  const config: RTCPeerConnectionConfig = {
    codecs: role === 'ingress' ? ingressCodecs() : egressCodecs(),
    headerExtensions: role === 'ingress' ? ingressHeaderExtensions() : egressHeaderExtensions(),
    bundlePolicy: 'max-bundle',
    iceServers: iceServers(settings),
    // The host addresses are fixed explicitly (no interface scan per connection), IPv6 off: the
    // port block of a connection is sized for exactly these sockets.
    iceUseIpv4: false,
    iceUseIpv6: false,
    iceAdditionalHostAddresses: settings.hostAddresses,
    iceInterfaceAddresses: settings.listenIp ? { udp4: settings.listenIp } : undefined,
    icePortRange: portRange,
    iceStunGatherTimeout: 3,
    dtls: settings.dtlsCertificate ? { keys: settings.dtlsCertificate } : undefined,
  };
  return new RTCPeerConnection(config);
}

/** TURN credentials by the TURN REST API convention (coturn `use-auth-secret`), valid for a day. */
const TURN_CREDENTIAL_LIFETIME_SECONDS = 86_400;

function iceServers(settings: RtcSettings) {
  const servers: { urls: string; username?: string; credential?: string }[] = [];
  if (settings.stunUrl) servers.push({ urls: settings.stunUrl });
  if (settings.turn?.secret) {
    const username = `${Math.floor(Date.now() / 1000) + TURN_CREDENTIAL_LIFETIME_SECONDS}:media-node`;
    const credential = createHmac('sha1', settings.turn.secret).update(username).digest('base64');
    servers.push({ urls: settings.turn.url, username, credential });
  }
  return servers;
}
