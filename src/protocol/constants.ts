// Numbers both ends of a tsgi connection agree on: frame types, flags, reset codes, defaults.
// Plain `as const` objects rather than enums, so the TypeScript stays erasable.

/**
 * Protocol versions this build speaks, oldest first. 2 adds tunnels: Request.upgrade, answered
 * by a 101 RESPONSE after which DATA carries the upgraded protocol both ways. 3 adds transient
 * header values (HeaderBlock.transient): sent, but not remembered by either end's value table.
 */
export const PROTOCOL_VERSIONS: readonly number[] = [1, 2, 3];

/** The first protocol version with tunnels (Request.upgrade, a 101 RESPONSE). */
export const TUNNEL_VERSION = 2;

/** The first protocol version with transient header values (HeaderBlock.transient). */
export const TRANSIENT_VERSION = 3;

/** Bytes in a frame header: length u32 | type u8 | flags u8 | stream u32. */
export const FRAME_HEADER_SIZE = 10;

export const FrameType = {
  HELLO: 0,
  REQUEST: 1,
  RESPONSE: 2,
  DATA: 3,
  TRAILERS: 4,
  RESET: 5,
  WINDOW: 6,
  GOAWAY: 7,
  PING: 8,
  PONG: 9,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];
export const FRAME_TYPE_NAMES: readonly string[] = Object.keys(FrameType);

export const Flags = {
  /** No more frames follow on this stream from this side. */
  END_STREAM: 0x1,
} as const;

/** Why a stream was reset. Sent in RESET and GOAWAY frames. */
export const ResetCode = {
  /** Nothing wrong: the sender needs no more (e.g. the response ended before the body was read). */
  NO_ERROR: 0,
  /** The peer broke the protocol on this stream. */
  PROTOCOL_ERROR: 1,
  /** Something failed inside the sender (an app error after the head went out). */
  INTERNAL_ERROR: 2,
  /** DATA beyond the credit granted. */
  FLOW_CONTROL_ERROR: 3,
  /** The stream was never processed; the request may safely be sent elsewhere. */
  REFUSED_STREAM: 4,
  /**
   * The client went away or no longer wants the response. From a backend before the response
   * head: the application cut its connection; the front cuts its client's, with no response.
   */
  CANCEL: 5,
  /** The request's deadline passed. */
  TIMEOUT: 6,
  /** A head or body exceeded a limit. */
  TOO_LARGE: 7,
} as const;
export type ResetCode = (typeof ResetCode)[keyof typeof ResetCode];
export const RESET_CODE_NAMES: readonly string[] = Object.keys(ResetCode);

export const DEFAULTS = {
  /** Largest frame payload accepted. Request and response heads must fit in one frame. */
  maxFrameSize: 1024 * 1024,
  /** DATA payloads are cut into frames of at most this size. */
  dataChunkSize: 64 * 1024,
  /** Flow-control credit per stream, in bytes. */
  initialWindow: 256 * 1024,
  /** Concurrent streams per connection. */
  maxStreams: 1024,
  /** Largest head (or trailers) received, counted as decoded: each field's name and value plus 4. */
  maxHeadSize: 64 * 1024,
} as const;

/**
 * What a peer may declare in its HELLO: larger values are clamped to these (and logged), so
 * that no peer makes us buffer more than this per stream, or open more connections than this.
 */
export const PEER_LIMITS = {
  /** Credit per stream we use, whatever the peer grants: the most we write ahead for one stream. */
  initialWindow: 16 * 1024 * 1024,
  /** Frame size we assume the peer takes (it only bounds the heads we may send). */
  maxFrameSize: 16 * 1024 * 1024,
  /** Concurrent streams we take the peer to accept (0, no limit, stays 0). */
  maxStreams: 0x7fffffff,
  /** Connections the peer may ask us to open (the most workers a backend runs). */
  connections: 256,
} as const;

/** Peer-supplied text (RESET and GOAWAY messages, HELLO software) is cut to this many characters. */
export const MAX_PEER_TEXT = 256;

/**
 * Replies owed to the peer (a PONG, a RESET refusing or failing one of its streams) that were
 * written while the transport was congested, counted until it drains. From `pause` on, the I/O
 * layer stops reading the peer until the transport drains. More than `pongs` PONGs, or more
 * RESETs than the streams we accept plus `pongs`, close the connection (a flood). A peer that
 * reads what we write never gets there: it has one PING out at a time, and no more streams
 * open than we accept.
 */
export const REPLY_LIMITS = {
  pause: 16,
  pongs: 256,
} as const;

/** Stream ids are 31-bit; a connection that reaches this stops opening streams. */
export const MAX_STREAM_ID = 0x7fffffff;
