import { parentPort } from 'node:worker_threads';
import { RTCDtlsTransport } from 'werift';
import type { DtlsCertificate } from '../sfu/rtc-settings.ts';

/**
 * A short-lived worker thread that generates the node's DTLS certificate (werift's own: ECDSA P-256,
 * SHA-256) and exits. Started once by MediaWorkerPool; every media worker gets the result. X.509
 * generation (@peculiar/x509 and its ASN.1 libraries) costs each thread that loads it ~10 MB for
 * good, so no long-lived thread does.
 */
if (!parentPort) throw new Error('dtls-certificate-worker.ts runs as a worker thread');
const certificate = await RTCDtlsTransport.SetupCertificate();
const result: DtlsCertificate = {
  certPem: certificate.certPem,
  keyPem: certificate.privateKey,
  signatureHash: certificate.signatureHash,
};
parentPort.postMessage(result);
