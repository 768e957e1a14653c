/*
 * SRTP AEAD_AES_128_GCM (RFC 7714) for the media node's forwarding fast path.
 *
 * Node's crypto creates (and OpenSSL 3 sets up) a cipher object for every createCipheriv: 7-9 us per
 * packet here, most of it setup. This keeps one EVP_CIPHER_CTX per SRTP session key, keyed once;
 * per packet only the IV is set. The output (header | ciphertext | tag) is written in one piece and
 * either returned as a Buffer or sent on the leg's UDP socket directly with sendto(2), which skips
 * dgram's per-datagram JS (request object, address lookup, list of buffers). The same contexts decrypt
 * what the node receives (SRTP and SRTCP, media-node/src/sfu/srtp-sessions.ts) and encrypt its RTCP.
 *
 * Built against Node's own OpenSSL headers; the symbols resolve from the node binary, which exports
 * them, so nothing is linked and the OpenSSL that runs is the one Node's crypto uses.
 * Built by build.ts (npm install). The JS fallback in rtp-egress.ts is used when it is absent.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <openssl/evp.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define KEY_SIZE 16
#define SALT_SIZE 12
#define TAG_SIZE 16
/* Larger than any datagram the node forwards (the path MTU); bigger packets go through dgram. */
#define MAX_DATAGRAM 2048

typedef struct {
  EVP_CIPHER_CTX *ctx;
  uint8_t salt[SALT_SIZE];
  /* Set up for decryption (the remote side's keys): only the unprotect functions take it. */
  int decrypts;
} srtp_session;

typedef struct {
  struct sockaddr_storage address;
  socklen_t length;
} udp_destination;

#define CHECK(call)                                                                                                   \
  do {                                                                                                                \
    if ((call) != napi_ok) return NULL;                                                                               \
  } while (0)

static napi_value throw_error(napi_env env, const char *message) {
  napi_throw_error(env, NULL, message);
  return NULL;
}

static void free_session(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  srtp_session *session = data;
  EVP_CIPHER_CTX_free(session->ctx);
  free(session);
}

static void free_destination(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

/* A session argument set up for the direction asked (decrypts or not), or NULL. */
static srtp_session *session_arg(napi_env env, napi_value value, int decrypts) {
  void *data;
  if (napi_get_value_external(env, value, &data) != napi_ok) return NULL;
  srtp_session *session = data;
  return session->decrypts == decrypts ? session : NULL;
}

/*
 * The call's `count` arguments into argv, argv[0] a session set up for the direction asked (decrypts
 * or not); NULL when there are fewer or the first is not such a session.
 */
static srtp_session *session_call(napi_env env, napi_callback_info info, size_t count, napi_value *argv,
                                  int decrypts) {
  size_t argc = count;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < count) return NULL;
  return session_arg(env, argv[0], decrypts);
}

/* `data` as a JS external that `finalize` frees; freed at once when the external cannot be made. */
static napi_value wrap_external(napi_env env, void *data, napi_finalize finalize) {
  napi_value result;
  if (napi_create_external(env, data, finalize, NULL, &result) != napi_ok) {
    finalize(env, data, NULL);
    return NULL;
  }
  return result;
}

static int buffer_arg(napi_env env, napi_value value, uint8_t **data, size_t *length) {
  bool is_buffer = false;
  if (napi_is_buffer(env, value, &is_buffer) != napi_ok || !is_buffer) return 0;
  return napi_get_buffer_info(env, value, (void **)data, length) == napi_ok;
}

/* An optional Buffer: undefined gives length 0. */
static int optional_buffer_arg(napi_env env, napi_value value, uint8_t **data, size_t *length) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok) return 0;
  if (type == napi_undefined) {
    *data = NULL;
    *length = 0;
    return 1;
  }
  return buffer_arg(env, value, data, length);
}

/* srtpSession(sessionKey: Buffer(16), sessionSalt: Buffer(12), decrypts?: boolean) -> external */
static napi_value srtp_session_new(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *key, *salt;
  size_t key_length, salt_length;
  bool decrypts = false;
  if (argc < 2 || !buffer_arg(env, argv[0], &key, &key_length) || !buffer_arg(env, argv[1], &salt, &salt_length) ||
      key_length != KEY_SIZE || salt_length < SALT_SIZE ||
      (argc > 2 && napi_get_value_bool(env, argv[2], &decrypts) != napi_ok)) {
    return throw_error(env, "srtpSession(key: 16-byte Buffer, salt: Buffer of at least 12 bytes, decrypts?: boolean)");
  }
  srtp_session *session = calloc(1, sizeof(*session));
  if (!session) return throw_error(env, "out of memory");
  session->decrypts = decrypts;
  session->ctx = EVP_CIPHER_CTX_new();
  if (!session->ctx ||
      (decrypts ? EVP_DecryptInit_ex(session->ctx, EVP_aes_128_gcm(), NULL, key, NULL)
                : EVP_EncryptInit_ex(session->ctx, EVP_aes_128_gcm(), NULL, key, NULL)) != 1) {
    EVP_CIPHER_CTX_free(session->ctx);
    free(session);
    return throw_error(env, "AES-128-GCM is not available");
  }
  memcpy(session->salt, salt, SALT_SIZE);
  return wrap_external(env, session, free_session);
}

/* udpDestination(ip: string, port: number) -> external (a resolved sockaddr) */
static napi_value udp_destination_new(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char ip[64];
  size_t ip_length;
  uint32_t port;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], ip, sizeof(ip), &ip_length) != napi_ok ||
      napi_get_value_uint32(env, argv[1], &port) != napi_ok || port == 0 || port > 65535) {
    return throw_error(env, "udpDestination(ip: string, port: number)");
  }
  udp_destination *destination = calloc(1, sizeof(*destination));
  if (!destination) return throw_error(env, "out of memory");
  struct sockaddr_in *v4 = (struct sockaddr_in *)&destination->address;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&destination->address;
  if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    destination->length = sizeof(*v4);
  } else if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    destination->length = sizeof(*v6);
  } else {
    free(destination);
    return throw_error(env, "udpDestination: not an IP address");
  }
  return wrap_external(env, destination, free_destination);
}

/* RFC 7714 section 8.1: SRTP IV = salt XOR (00 00 || SSRC || ROC || SEQ). */
static void srtp_iv(const srtp_session *session, uint32_t ssrc, uint32_t roc, uint32_t sequence_number,
                    uint8_t iv[SALT_SIZE]) {
  const uint8_t plain[SALT_SIZE] = {0, 0, ssrc >> 24, ssrc >> 16, ssrc >> 8, ssrc, roc >> 24, roc >> 16, roc >> 8, roc,
                                    sequence_number >> 8, sequence_number};
  for (int position = 0; position < SALT_SIZE; position++) iv[position] = plain[position] ^ session->salt[position];
}

/*
 * Encrypts into `out` (header | ciphertext | tag); returns the datagram's length, or 0 on failure.
 * RFC 7714 section 8.1 (IV: srtp_iv); the header is the AAD. `prefix`
 * is encrypted in place of the payload's first bytes (the payload is shared by every leg).
 */
static size_t seal(srtp_session *session, const uint8_t *header, size_t header_length, const uint8_t *prefix,
                   size_t prefix_length, const uint8_t *payload, size_t payload_length, uint32_t ssrc, uint32_t roc,
                   uint32_t sequence_number, uint8_t *out) {
  uint8_t iv[SALT_SIZE];
  srtp_iv(session, ssrc, roc, sequence_number, iv);
  EVP_CIPHER_CTX *ctx = session->ctx;
  int written;
  if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1) return 0;
  if (EVP_EncryptUpdate(ctx, NULL, &written, header, (int)header_length) != 1) return 0;
  memcpy(out, header, header_length);
  size_t length = header_length;
  if (prefix_length > 0) {
    if (EVP_EncryptUpdate(ctx, out + length, &written, prefix, (int)prefix_length) != 1) return 0;
    length += (size_t)written;
  }
  if (EVP_EncryptUpdate(ctx, out + length, &written, payload + prefix_length, (int)(payload_length - prefix_length)) !=
      1) {
    return 0;
  }
  length += (size_t)written;
  if (EVP_EncryptFinal_ex(ctx, out + length, &written) != 1) return 0;
  length += (size_t)written;
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_SIZE, out + length) != 1) return 0;
  return length + TAG_SIZE;
}

static uint32_t read_u32(const uint8_t *data) {
  return (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 | data[3];
}

typedef struct {
  srtp_session *session;
  uint8_t *header, *payload, *prefix;
  size_t header_length, payload_length, prefix_length;
  uint32_t ssrc, roc, sequence_number;
} seal_args;

/*
 * (header, payload, prefix | undefined, roc) from argv[0..3], for `session`. The SSRC and sequence
 * number (the IV's) are the header's own: the header is at least the fixed 12 bytes.
 */
static int read_seal_args(napi_env env, napi_value *argv, srtp_session *session, seal_args *args) {
  args->session = session;
  if (!buffer_arg(env, argv[0], &args->header, &args->header_length) || args->header_length < 12 ||
      !buffer_arg(env, argv[1], &args->payload, &args->payload_length) ||
      !optional_buffer_arg(env, argv[2], &args->prefix, &args->prefix_length) ||
      args->prefix_length > args->payload_length || napi_get_value_uint32(env, argv[3], &args->roc) != napi_ok) {
    return 0;
  }
  args->ssrc = read_u32(args->header + 8);
  args->sequence_number = (uint32_t)args->header[2] << 8 | args->header[3];
  return 1;
}

/* protectRtp(session, header, payload, prefix, roc) -> Buffer */
static napi_value protect_rtp(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  seal_args args;
  srtp_session *session = session_call(env, info, 5, argv, 0);
  if (!session || !read_seal_args(env, argv + 1, session, &args)) {
    return throw_error(env, "protectRtp(encrypting session, header of 12 bytes or more, payload, prefix, roc)");
  }
  napi_value result;
  uint8_t *out;
  CHECK(napi_create_buffer(env, args.header_length + args.payload_length + TAG_SIZE, (void **)&out, &result));
  if (seal(args.session, args.header, args.header_length, args.prefix, args.prefix_length, args.payload,
           args.payload_length, args.ssrc, args.roc, args.sequence_number, out) == 0) {
    return throw_error(env, "SRTP encryption failed");
  }
  return result;
}

/*
 * A leg's way out: its encrypting session and remote address, one external, so that a packet
 * costs one lookup of it (sendProtectedRtp). Holds a reference to the session's external.
 */
typedef struct {
  srtp_session *session;
  napi_ref session_ref;
  udp_destination destination;
} send_target;

static void free_send_target(napi_env env, void *data, void *hint) {
  (void)hint;
  send_target *target = data;
  napi_delete_reference(env, target->session_ref);
  free(target);
}

/* sendTarget(encrypting session, destination) -> external */
static napi_value send_target_new(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  srtp_session *session = session_call(env, info, 2, argv, 0);
  void *destination;
  if (!session || napi_get_value_external(env, argv[1], &destination) != napi_ok) {
    return throw_error(env, "sendTarget(encrypting session, destination)");
  }
  send_target *target = calloc(1, sizeof(*target));
  if (!target) return throw_error(env, "out of memory");
  target->session = session;
  memcpy(&target->destination, destination, sizeof(target->destination));
  if (napi_create_reference(env, argv[0], 1, &target->session_ref) != napi_ok) {
    free(target);
    return NULL;
  }
  return wrap_external(env, target, free_send_target);
}

/*
 * sendProtectedRtp(target, header, payload, prefix, roc, fd)
 *   -> the datagram's length, or -errno when it was not sent (EAGAIN: the socket's buffer is full;
 *      EMSGSIZE: larger than the addon's stack buffer): the caller sends it through dgram, which
 *      queues. Throws on bad arguments.
 */
static napi_value send_protected_rtp(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *target_data;
  seal_args args;
  int32_t fd;
  if (argc < 6 || napi_get_value_external(env, argv[0], &target_data) != napi_ok ||
      !read_seal_args(env, argv + 1, ((send_target *)target_data)->session, &args) ||
      napi_get_value_int32(env, argv[5], &fd) != napi_ok) {
    return throw_error(env, "sendProtectedRtp(target, header of 12 bytes or more, payload, prefix, roc, fd)");
  }
  send_target *target = target_data;
  napi_value result;
  if (args.header_length + args.payload_length + TAG_SIZE > MAX_DATAGRAM) {
    /* Larger than any path MTU the node sees: the caller sends it through dgram. */
    CHECK(napi_create_int32(env, -EMSGSIZE, &result));
    return result;
  }
  uint8_t out[MAX_DATAGRAM];
  size_t length = seal(args.session, args.header, args.header_length, args.prefix, args.prefix_length, args.payload,
                       args.payload_length, args.ssrc, args.roc, args.sequence_number, out);
  if (length == 0) return throw_error(env, "SRTP encryption failed");
  ssize_t sent;
  do {
    sent = sendto(fd, out, length, MSG_DONTWAIT, (struct sockaddr *)&target->destination.address,
                  target->destination.length);
  } while (sent < 0 && errno == EINTR);
  CHECK(napi_create_int32(env, sent < 0 ? -errno : (int32_t)sent, &result));
  return result;
}

/*
 * The fan-out: one call per source packet sends it to every leg staged for it (fanoutRtp), so the
 * per-leg cost is the header, the encryption and sendto(2), not a JS-to-native call with its own
 * argument checks. A leg's numbers live in a Uint32Array the JS side writes (rtp-egress.ts,
 * LEG_STATE): its socket, SSRC, payload type, this packet's sequence number and timestamp, whether
 * it may send; the rollover counter's state (werift's, whose state object reads and writes the same
 * array); and the result. Slots mirrored in rtp-egress.ts.
 */
enum {
  LEG_FD,
  LEG_SSRC,
  LEG_PAYLOAD_TYPE,
  LEG_SEND,
  LEG_SEQUENCE_NUMBER,
  LEG_TIMESTAMP,
  LEG_ROLLOVER_COUNTER,
  LEG_LAST_SEQUENCE_NUMBER,
  LEG_ROLLOVER_STARTED,
  LEG_RESULT,
  /* Written by fanoutLeg: the leg's number in this thread's registry, which fanoutRtp takes. */
  LEG_ID,
  /* A steady leg's offsets from the source's sequence numbers and timestamps (fanoutRtp's steady form). */
  LEG_SEQUENCE_OFFSET,
  LEG_TIMESTAMP_OFFSET,
  /*
   * What the steady form sent since the JS side last took the counts (and zeroed them): packets and
   * their payload bytes, every packet; datagrams and their bytes, every packet the leg may send (one
   * the socket did not take goes through dgram, the same bytes).
   */
  LEG_STEADY_PACKETS,
  LEG_STEADY_OCTETS,
  LEG_STEADY_DATAGRAMS,
  LEG_STEADY_DATAGRAM_BYTES,
  LEG_STATE_SLOTS
};

/* A header with the MID extension (RFC 8285) fits; the node writes no other extension. */
#define MAX_LEG_HEADER 64
/* Tells a fan-out leg's external from the addon's other externals. */
#define FANOUT_LEG_MAGIC 0x66616e6fu

struct leg_registry;

typedef struct {
  uint32_t magic;
  uint32_t id;
  struct leg_registry *registry;
  srtp_session *session;
  napi_ref session_ref;
  udp_destination destination;
  uint32_t *state;
  napi_ref state_ref;
  uint8_t header[MAX_LEG_HEADER];
  size_t header_length;
} fanout_leg;

/*
 * The fan-out legs alive in this thread (one registry per N-API environment: each worker thread loads
 * the addon for itself), by number: fanoutRtp takes the staged legs' numbers in one Uint32Array
 * rather than an array of externals, two N-API calls per leg. A number is free again once its leg's
 * external is collected; a leg staged in a batch is referenced by it, so no number in a batch is stale.
 * Freed when the environment goes and its last leg is collected, in whichever order they come.
 */
typedef struct leg_registry {
  fanout_leg **legs;
  uint32_t capacity;
  uint32_t *free_ids;
  uint32_t free_count;
  uint32_t next_id;
  uint32_t live;
  int environment_gone;
} leg_registry;

static void free_registry_memory(leg_registry *registry) {
  free(registry->legs);
  free(registry->free_ids);
  free(registry);
}

static void free_registry(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  leg_registry *registry = data;
  registry->environment_gone = 1;
  if (registry->live == 0) free_registry_memory(registry);
}

static leg_registry *registry_of(napi_env env) {
  void *data = NULL;
  return napi_get_instance_data(env, &data) == napi_ok ? data : NULL;
}

/* Gives `leg` a number in the registry; 0 when out of memory. */
static int register_leg(leg_registry *registry, fanout_leg *leg) {
  uint32_t id;
  if (registry->free_count > 0) {
    id = registry->free_ids[--registry->free_count];
  } else {
    if (registry->next_id == registry->capacity) {
      uint32_t capacity = registry->capacity ? registry->capacity * 2 : 64;
      fanout_leg **legs = realloc(registry->legs, capacity * sizeof(*legs));
      if (!legs) return 0;
      registry->legs = legs;
      uint32_t *free_ids = realloc(registry->free_ids, capacity * sizeof(*free_ids));
      if (!free_ids) return 0;
      registry->free_ids = free_ids;
      registry->capacity = capacity;
    }
    id = registry->next_id++;
  }
  registry->legs[id] = leg;
  registry->live++;
  leg->id = id;
  leg->registry = registry;
  return 1;
}

static void free_fanout_leg(napi_env env, void *data, void *hint) {
  (void)hint;
  fanout_leg *leg = data;
  leg_registry *registry = leg->registry;
  if (registry) {
    registry->legs[leg->id] = NULL;
    registry->free_ids[registry->free_count++] = leg->id;
    if (--registry->live == 0 && registry->environment_gone) free_registry_memory(registry);
  }
  if (leg->session_ref) napi_delete_reference(env, leg->session_ref);
  if (leg->state_ref) napi_delete_reference(env, leg->state_ref);
  free(leg);
}

/* fanoutLeg(encrypting session, destination, header template, state: Uint32Array) -> external */
static napi_value fanout_leg_new(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  srtp_session *session = session_call(env, info, 4, argv, 0);
  void *destination;
  uint8_t *header;
  size_t header_length;
  bool is_typedarray = false;
  napi_typedarray_type type;
  size_t slots;
  void *state;
  if (!session || napi_get_value_external(env, argv[1], &destination) != napi_ok ||
      !buffer_arg(env, argv[2], &header, &header_length) || header_length < 12 || header_length > MAX_LEG_HEADER ||
      napi_is_typedarray(env, argv[3], &is_typedarray) != napi_ok || !is_typedarray ||
      napi_get_typedarray_info(env, argv[3], &type, &slots, &state, NULL, NULL) != napi_ok ||
      type != napi_uint32_array || slots < LEG_STATE_SLOTS) {
    return throw_error(env, "fanoutLeg(encrypting session, destination, header of 12 to 64 bytes, Uint32Array state)");
  }
  leg_registry *registry = registry_of(env);
  fanout_leg *leg = calloc(1, sizeof(*leg));
  if (!leg) return throw_error(env, "out of memory");
  leg->magic = FANOUT_LEG_MAGIC;
  leg->id = UINT32_MAX;
  leg->session = session;
  memcpy(&leg->destination, destination, sizeof(leg->destination));
  memcpy(leg->header, header, header_length);
  leg->header_length = header_length;
  /* The array's memory stays where it is while the reference keeps it alive (an ArrayBuffer's store). */
  leg->state = state;
  if (napi_create_reference(env, argv[0], 1, &leg->session_ref) != napi_ok ||
      napi_create_reference(env, argv[3], 1, &leg->state_ref) != napi_ok) {
    free_fanout_leg(env, leg, NULL);
    return NULL;
  }
  if (!registry || !register_leg(registry, leg)) {
    free_fanout_leg(env, leg, NULL);
    return throw_error(env, "out of memory");
  }
  leg->state[LEG_ID] = leg->id;
  return wrap_external(env, leg, free_fanout_leg);
}

/* werift 0.25's SrtpContext.updateRolloverCount, step for step: the fast path's IVs are werift's. */
#define MAX_ROC_DISORDER 100
#define MAX_SEQUENCE_NUMBER 65535
static void update_rollover_counter(uint32_t *state, uint32_t sequence_number) {
  uint32_t last = state[LEG_LAST_SEQUENCE_NUMBER];
  if (!state[LEG_ROLLOVER_STARTED]) {
    state[LEG_ROLLOVER_STARTED] = 1;
  } else if (sequence_number == 0) {
    if (last > MAX_ROC_DISORDER) state[LEG_ROLLOVER_COUNTER]++;
  } else if (last < MAX_ROC_DISORDER && sequence_number > MAX_SEQUENCE_NUMBER - MAX_ROC_DISORDER) {
    if (state[LEG_ROLLOVER_COUNTER] > 0) state[LEG_ROLLOVER_COUNTER]--;
  } else if (sequence_number < MAX_ROC_DISORDER && last > MAX_SEQUENCE_NUMBER - MAX_ROC_DISORDER) {
    state[LEG_ROLLOVER_COUNTER]++;
  }
  state[LEG_LAST_SEQUENCE_NUMBER] = sequence_number;
}

/*
 * fanoutRtp(legs: Uint32Array of leg numbers (LEG_ID), count, payload, marker: boolean
 *           [, sourceSequenceNumber, sourceTimestamp]) -> how many legs' datagrams were not sent.
 * For each of the first `count` legs: the rollover counter moves (sent or not, as werift's does for
 * every packet); a leg whose LEG_SEND is set gets header | ciphertext | tag with one sendto(2), and
 * LEG_RESULT the datagram's length, or -errno when the socket did not take it or the datagram is over
 * MAX_DATAGRAM (the caller sends those through dgram). Staged legs come with this packet's sequence
 * number and timestamp in their state; with the source's numbers (the steady form), each leg's are the
 * source's plus its offsets, written back to its state, and the leg counts what it sent
 * (LEG_STEADY_*). Throws on bad arguments before sending anything.
 */
static napi_value fanout_rtp(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool is_typedarray = false;
  napi_typedarray_type type;
  size_t length;
  void *ids_data;
  uint32_t count;
  uint8_t *payload;
  size_t payload_length;
  bool marker;
  leg_registry *registry = registry_of(env);
  if (argc < 4 || !registry || napi_is_typedarray(env, argv[0], &is_typedarray) != napi_ok || !is_typedarray ||
      napi_get_typedarray_info(env, argv[0], &type, &length, &ids_data, NULL, NULL) != napi_ok ||
      type != napi_uint32_array || napi_get_value_uint32(env, argv[1], &count) != napi_ok || count > length ||
      !buffer_arg(env, argv[2], &payload, &payload_length) || napi_get_value_bool(env, argv[3], &marker) != napi_ok) {
    return throw_error(env, "fanoutRtp(legs: Uint32Array, count, payload, marker)");
  }
  bool steady = argc >= 6;
  uint32_t source_sequence_number = 0, source_timestamp = 0;
  if (steady && (napi_get_value_uint32(env, argv[4], &source_sequence_number) != napi_ok ||
                 napi_get_value_uint32(env, argv[5], &source_timestamp) != napi_ok)) {
    return throw_error(env, "fanoutRtp(legs, count, payload, marker, sourceSequenceNumber, sourceTimestamp)");
  }
  const uint32_t *ids = ids_data;
  /* Every leg checked before any is sent: a bad one leaves the packet unsent for all, not half. */
  for (uint32_t index = 0; index < count; index++) {
    if (ids[index] >= registry->next_id || registry->legs[ids[index]] == NULL) {
      return throw_error(env, "fanoutRtp: not the number of a fan-out leg");
    }
  }
  uint32_t unsent = 0;
  uint8_t out[MAX_DATAGRAM];
  for (uint32_t index = 0; index < count; index++) {
    fanout_leg *leg = registry->legs[ids[index]];
    uint32_t *state = leg->state;
    if (steady) {
      state[LEG_SEQUENCE_NUMBER] = (source_sequence_number + state[LEG_SEQUENCE_OFFSET]) & 0xffff;
      state[LEG_TIMESTAMP] = source_timestamp + state[LEG_TIMESTAMP_OFFSET];
      state[LEG_STEADY_PACKETS]++;
      state[LEG_STEADY_OCTETS] += (uint32_t)payload_length;
      if (state[LEG_SEND]) {
        state[LEG_STEADY_DATAGRAMS]++;
        state[LEG_STEADY_DATAGRAM_BYTES] += (uint32_t)(leg->header_length + payload_length + TAG_SIZE);
      }
    }
    uint32_t sequence_number = state[LEG_SEQUENCE_NUMBER] & 0xffff;
    update_rollover_counter(state, sequence_number);
    if (!state[LEG_SEND]) {
      state[LEG_RESULT] = 0;
      continue;
    }
    uint8_t *header = leg->header;
    uint32_t ssrc = state[LEG_SSRC], timestamp = state[LEG_TIMESTAMP];
    header[1] = (uint8_t)((marker ? 0x80 : 0) | (state[LEG_PAYLOAD_TYPE] & 0x7f));
    header[2] = (uint8_t)(sequence_number >> 8);
    header[3] = (uint8_t)sequence_number;
    header[4] = (uint8_t)(timestamp >> 24);
    header[5] = (uint8_t)(timestamp >> 16);
    header[6] = (uint8_t)(timestamp >> 8);
    header[7] = (uint8_t)timestamp;
    header[8] = (uint8_t)(ssrc >> 24);
    header[9] = (uint8_t)(ssrc >> 16);
    header[10] = (uint8_t)(ssrc >> 8);
    header[11] = (uint8_t)ssrc;
    ssize_t sent;
    if (leg->header_length + payload_length + TAG_SIZE > MAX_DATAGRAM) {
      sent = -EMSGSIZE;
    } else {
      size_t datagram = seal(leg->session, header, leg->header_length, NULL, 0, payload, payload_length, ssrc,
                             state[LEG_ROLLOVER_COUNTER], sequence_number, out);
      if (datagram == 0) {
        sent = -EIO;
      } else {
        do {
          sent = sendto((int)state[LEG_FD], out, datagram, MSG_DONTWAIT,
                        (struct sockaddr *)&leg->destination.address, leg->destination.length);
        } while (sent < 0 && errno == EINTR);
        if (sent < 0) sent = -errno;
      }
    }
    state[LEG_RESULT] = (uint32_t)(int32_t)sent;
    if (sent < 0) unsent++;
  }
  napi_value result;
  CHECK(napi_create_uint32(env, unsent, &result));
  return result;
}

/* RFC 7714 section 9.1: SRTCP IV = salt XOR (00 00 || SSRC || 00 00 || SRTCP index). */
static void srtcp_iv(const srtp_session *session, uint32_t ssrc, uint32_t index, uint8_t iv[SALT_SIZE]) {
  const uint8_t plain[SALT_SIZE] = {0, 0, ssrc >> 24, ssrc >> 16, ssrc >> 8, ssrc, 0, 0, index >> 24, index >> 16,
                                    index >> 8, index};
  for (int position = 0; position < SALT_SIZE; position++) iv[position] = plain[position] ^ session->salt[position];
}

/* The AEAD's open: returns 1 when `tag` authenticates `aad` (two parts) and the ciphertext, written to `out`. */
static int open_sealed(srtp_session *session, const uint8_t iv[SALT_SIZE], const uint8_t *aad, size_t aad_length,
                       const uint8_t *aad_tail, size_t aad_tail_length, const uint8_t *ciphertext,
                       size_t ciphertext_length, const uint8_t *tag, uint8_t *out) {
  EVP_CIPHER_CTX *ctx = session->ctx;
  int written;
  if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1) return 0;
  if (EVP_DecryptUpdate(ctx, NULL, &written, aad, (int)aad_length) != 1) return 0;
  if (aad_tail_length > 0 && EVP_DecryptUpdate(ctx, NULL, &written, aad_tail, (int)aad_tail_length) != 1) return 0;
  if (ciphertext_length > 0 && EVP_DecryptUpdate(ctx, out, &written, ciphertext, (int)ciphertext_length) != 1) {
    return 0;
  }
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_SIZE, (void *)tag) != 1) return 0;
  return EVP_DecryptFinal_ex(ctx, out + ciphertext_length, &written) == 1;
}

/*
 * unprotectRtp(session, packet, headerLength, rolloverCounter) -> Buffer (header | plaintext), or null
 * when the packet does not authenticate. The caller parsed the header (its length, SSRC and sequence
 * number) and keeps the rollover counter (RFC 3711 section 3.3.1), as werift does.
 */
static napi_value unprotect_rtp(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  srtp_session *session = session_call(env, info, 4, argv, 1);
  uint8_t *packet;
  size_t packet_length;
  uint32_t header_length, roc;
  if (!session || !buffer_arg(env, argv[1], &packet, &packet_length) ||
      napi_get_value_uint32(env, argv[2], &header_length) != napi_ok ||
      napi_get_value_uint32(env, argv[3], &roc) != napi_ok || header_length < 12 ||
      header_length + TAG_SIZE > packet_length) {
    return throw_error(env, "unprotectRtp(decrypting session, packet, headerLength, rolloverCounter)");
  }
  uint32_t ssrc = read_u32(packet + 8);
  uint32_t sequence_number = (uint32_t)packet[2] << 8 | packet[3];
  uint8_t iv[SALT_SIZE];
  srtp_iv(session, ssrc, roc, sequence_number, iv);
  size_t plain_length = packet_length - TAG_SIZE;
  napi_value result;
  uint8_t *out;
  CHECK(napi_create_buffer(env, plain_length, (void **)&out, &result));
  memcpy(out, packet, header_length);
  if (!open_sealed(session, iv, packet, header_length, NULL, 0, packet + header_length, plain_length - header_length,
                   packet + plain_length, out + header_length)) {
    CHECK(napi_get_null(env, &result));
  }
  return result;
}

#define SRTCP_INDEX_SIZE 4
#define RTCP_HEADER_SIZE 8

/*
 * unprotectRtcp(session, packet) -> Buffer (the compound RTCP packet), or null when it does not
 * authenticate or is too short. RFC 7714 section 9: the E flag says whether the body is encrypted;
 * the AAD is the first 8 bytes (or the whole packet when not encrypted) and the E flag | index.
 */
static napi_value unprotect_rtcp(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  srtp_session *session = session_call(env, info, 2, argv, 1);
  uint8_t *packet;
  size_t packet_length;
  if (!session || !buffer_arg(env, argv[1], &packet, &packet_length)) {
    return throw_error(env, "unprotectRtcp(decrypting session, packet)");
  }
  napi_value result;
  if (packet_length < RTCP_HEADER_SIZE + TAG_SIZE + SRTCP_INDEX_SIZE) {
    CHECK(napi_get_null(env, &result));
    return result;
  }
  size_t index_offset = packet_length - SRTCP_INDEX_SIZE;
  size_t tag_offset = index_offset - TAG_SIZE;
  uint32_t encoded_index = read_u32(packet + index_offset);
  int encrypted = encoded_index >> 31;
  uint8_t iv[SALT_SIZE];
  srtcp_iv(session, read_u32(packet + 4), encoded_index & 0x7fffffff, iv);
  uint8_t *out;
  CHECK(napi_create_buffer(env, tag_offset, (void **)&out, &result));
  memcpy(out, packet, encrypted ? RTCP_HEADER_SIZE : tag_offset);
  int authentic = encrypted ? open_sealed(session, iv, packet, RTCP_HEADER_SIZE, packet + index_offset,
                                          SRTCP_INDEX_SIZE, packet + RTCP_HEADER_SIZE, tag_offset - RTCP_HEADER_SIZE,
                                          packet + tag_offset, out + RTCP_HEADER_SIZE)
                            : open_sealed(session, iv, packet, tag_offset, packet + index_offset, SRTCP_INDEX_SIZE,
                                          NULL, 0, packet + tag_offset, out + tag_offset);
  if (!authentic) CHECK(napi_get_null(env, &result));
  return result;
}

/*
 * protectRtcp(session, packet, srtcpIndex) -> Buffer: header | encrypted body | tag | E flag and index
 * (RFC 7714 section 9), the body always encrypted. The caller keeps the index, as werift does.
 */
static napi_value protect_rtcp(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  srtp_session *session = session_call(env, info, 3, argv, 0);
  uint8_t *packet;
  size_t packet_length;
  uint32_t index;
  if (!session || !buffer_arg(env, argv[1], &packet, &packet_length) ||
      napi_get_value_uint32(env, argv[2], &index) != napi_ok || packet_length < RTCP_HEADER_SIZE ||
      index > 0x7fffffff) {
    return throw_error(env, "protectRtcp(encrypting session, packet of 8 bytes or more, srtcpIndex < 2^31)");
  }
  uint8_t iv[SALT_SIZE];
  srtcp_iv(session, read_u32(packet + 4), index, iv);
  const uint8_t trailer[SRTCP_INDEX_SIZE] = {0x80 | index >> 24, index >> 16, index >> 8, index};
  napi_value result;
  uint8_t *out;
  CHECK(napi_create_buffer(env, packet_length + TAG_SIZE + SRTCP_INDEX_SIZE, (void **)&out, &result));
  EVP_CIPHER_CTX *ctx = session->ctx;
  int written;
  size_t length = RTCP_HEADER_SIZE;
  memcpy(out, packet, RTCP_HEADER_SIZE);
  if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1 ||
      EVP_EncryptUpdate(ctx, NULL, &written, packet, RTCP_HEADER_SIZE) != 1 ||
      EVP_EncryptUpdate(ctx, NULL, &written, trailer, SRTCP_INDEX_SIZE) != 1 ||
      EVP_EncryptUpdate(ctx, out + length, &written, packet + RTCP_HEADER_SIZE,
                        (int)(packet_length - RTCP_HEADER_SIZE)) != 1) {
    return throw_error(env, "SRTCP encryption failed");
  }
  length += (size_t)written;
  if (EVP_EncryptFinal_ex(ctx, out + length, &written) != 1) return throw_error(env, "SRTCP encryption failed");
  length += (size_t)written;
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_SIZE, out + length) != 1) {
    return throw_error(env, "SRTCP encryption failed");
  }
  memcpy(out + length + TAG_SIZE, trailer, SRTCP_INDEX_SIZE);
  return result;
}

NAPI_MODULE_INIT() {
  leg_registry *registry = calloc(1, sizeof(*registry));
  if (!registry || napi_set_instance_data(env, registry, free_registry, NULL) != napi_ok) {
    free(registry);
    return NULL;
  }
  /* The JS side refuses an addon whose leg state it does not match (one built from older sources). */
  napi_value leg_state_slots;
  if (napi_create_uint32(env, LEG_STATE_SLOTS, &leg_state_slots) != napi_ok) return NULL;
  napi_property_descriptor properties[] = {
      {"legStateSlots", NULL, NULL, NULL, NULL, leg_state_slots, napi_enumerable, NULL},
      {"srtpSession", NULL, srtp_session_new, NULL, NULL, NULL, napi_default, NULL},
      {"udpDestination", NULL, udp_destination_new, NULL, NULL, NULL, napi_default, NULL},
      {"protectRtp", NULL, protect_rtp, NULL, NULL, NULL, napi_default, NULL},
      {"sendTarget", NULL, send_target_new, NULL, NULL, NULL, napi_default, NULL},
      {"sendProtectedRtp", NULL, send_protected_rtp, NULL, NULL, NULL, napi_default, NULL},
      {"unprotectRtp", NULL, unprotect_rtp, NULL, NULL, NULL, napi_default, NULL},
      {"unprotectRtcp", NULL, unprotect_rtcp, NULL, NULL, NULL, napi_default, NULL},
      {"protectRtcp", NULL, protect_rtcp, NULL, NULL, NULL, napi_default, NULL},
      {"fanoutLeg", NULL, fanout_leg_new, NULL, NULL, NULL, napi_default, NULL},
      {"fanoutRtp", NULL, fanout_rtp, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof(properties) / sizeof(properties[0]), properties) != napi_ok) {
    return NULL;
  }
  return exports;
}
