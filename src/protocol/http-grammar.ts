// The HTTP field grammar, once: each rule with its RFC section, for every place that reads or
// writes a head (the front's parser and responses, the uwsgi response parser, the gateway's
// checks of an app's headers, the head translation). Strings here are latin1 (one char a byte).

/** A token (RFC 9110 5.6.2): a method, a header name, a coding, a connection option. */
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * What a field value (or a reason phrase) may not hold (RFC 9110 5.5): control characters other
 * than HTAB, and DEL. obs-text (0x80-0xff) is let through, as RFC 9110 allows a recipient to.
 */
export const BAD_FIELD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

/**
 * A Content-Length value (RFC 9110 8.6): digits only, no sign, space or list; at most 15 of them,
 * so the number is exact in a double and no length can overflow.
 */
export const CONTENT_LENGTH = /^\d{1,15}$/;

/**
 * Fields that belong to one connection, never forwarded in either direction nor accepted from an
 * app: RFC 9110 7.6.1's connection options, the legacy Proxy-Connection and Keep-Alive, and the
 * list PEP 3333 refuses from a WSGI app (RFC 2616 13.5.1: with Proxy-Authenticate and
 * Proxy-Authorization, and "Trailers" as PEP 3333 spells it). Lowercase.
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'trailers', 'transfer-encoding', 'upgrade',
]);
