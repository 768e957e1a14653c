import { RTCDtlsTransport } from 'werift';
import type { DtlsCertificate } from '../sfu/rtc-settings.ts';

/**
 * A short-lived child process that generates the node's DTLS certificate (werift's own: ECDSA P-256,
 * SHA-256), sends it to the media node over the IPC channel and is stopped. Started once by
 * MediaWorkerPool; every media worker gets the result. X.509 generation (@peculiar/x509 and its ASN.1
 * libraries) costs whoever loads it ~10 MB, and a thread that ran it leaves ~28 MB resident in the
 * process after it ends (its malloc arena, the code pages it touched): a process takes it all away.
 */
if (!process.send) throw new Error('dtls-certificate-process.ts runs as a child process with an IPC channel');
const certificate = await RTCDtlsTransport.SetupCertificate();
const result: DtlsCertificate = {
  certPem: certificate.certPem,
  keyPem: certificate.privateKey,
  signatureHash: certificate.signatureHash,
};
process.send(result);
