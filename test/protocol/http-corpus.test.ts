// The front's HTTP/1.1 request parser against public corpora (test/fixtures/http-corpus):
// gunicorn's tests/requests (valid and invalid), llhttp's test/request markdown (its strict
// "request" cases) and the http-garden's smuggling trophies. Each case is fed whole, byte by
// byte and in seeded random splits; the verdict (accepted or refused) must be the corpus's, and
// for accepted cases the method, target, version, headers and body it states. Where this parser
// deliberately differs (it is stricter), the case is listed below with the reason.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TsgiError } from '../../src/protocol/errors.js';
import { HttpRequestParser, type ParsedRequestHead } from '../../src/protocol/http-request.js';
import { FUZZ_SEED } from '../helpers/fuzz.js';
import { type CorpusCase, type CorpusRequest, gardenCases, gunicornCases, llhttpCases } from '../helpers/http-corpus.js';
import { randomSplit } from '../helpers/split.js';

const test = suite('protocol/http-corpus');

type Verdict = 'accepted' | 'refused';

interface Outcome {
  verdict: Verdict;
  /** Requests complete (onEnd), in order. */
  requests: { head: ParsedRequestHead; body: string }[];
  error: string | null;
}

/**
 * Feeds the chunks as the front's connection does: reset after each request, and nothing read
 * after one that does not keep the connection (HTTP/1.0 without keep-alive, Connection: close).
 * A request left open when the bytes end is refused: it never completes.
 */
function run(chunks: readonly Buffer[]): Outcome {
  const requests: Outcome['requests'] = [];
  let open: Outcome['requests'][number] | null = null;
  let ended = false;
  const parser = new HttpRequestParser({
    onHead: (head) => {
      open = { head, body: '' };
    },
    onBody: (c) => {
      open!.body += c.toString('latin1');
    },
    onEnd: () => {
      requests.push(open!);
      open = null;
      ended = true;
    },
  }, { maxHeadSize: 16384 });
  try {
    for (const c of chunks) {
      let pos = 0;
      while (pos < c.length) {
        pos = parser.push(c, pos);
        if (ended) {
          if (!requests.at(-1)!.head.keepAlive) return { verdict: 'accepted', requests, error: null };
          parser.reset();
          ended = false;
        }
      }
    }
  } catch (err) {
    if (!(err instanceof TsgiError)) throw err;
    return { verdict: 'refused', requests, error: `${err.code}: ${err.message}` };
  }
  if (!parser.idle) return { verdict: 'refused', requests, error: 'the bytes end inside a request' };
  return { verdict: 'accepted', requests, error: null };
}

const SEEDS = [1, 2, 3].map((k) => (FUZZ_SEED + k * 7919) >>> 0);

/** The outcome fed whole (the corpus's own writes); throws unless byte by byte and random splits give the same. */
function outcome(c: CorpusCase): Outcome {
  const whole = run(c.writes);
  const all = Buffer.concat(c.writes);
  const feeds: [string, Buffer[]][] = [
    ['byte by byte', [...all].map((b) => Buffer.from([b]))],
    ...SEEDS.map((s): [string, Buffer[]] => [`random split seed ${s} (FUZZ_SEED=${FUZZ_SEED})`, randomSplit(all, s, 32)]),
  ];
  for (const [how, chunks] of feeds) {
    const o = run(chunks);
    assert.equal({ ...o, error: o.error?.split(':')[0] ?? null }, { ...whole, error: whole.error?.split(':')[0] ?? null },
      `${c.id}: ${how} gives what whole gives`);
  }
  return whole;
}

const owsTrimmed = (s: string) => s.replace(/^[ \t]+|[ \t]+$/g, '');

/** Where the requests delivered differ from what the corpus states, or null. */
function requestsDiffer(got: Outcome['requests'], want: CorpusRequest[]): string | null {
  if (got.length !== want.length) return `${got.length} requests, the corpus states ${want.length}`;
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    if (g.head.method !== w.method) return `#${i} method ${JSON.stringify(g.head.method)}, the corpus ${JSON.stringify(w.method)}`;
    if (g.head.target !== w.target) return `#${i} target ${JSON.stringify(g.head.target)}, the corpus ${JSON.stringify(w.target)}`;
    if (w.minor >= 0 && g.head.minor !== w.minor) return `#${i} HTTP/1.${g.head.minor}, the corpus 1.${w.minor}`;
    if (w.headers !== null) {
      const gh: [string, string][] = [];
      for (let j = 0; j < g.head.headers.length; j += 2) gh.push([g.head.headers[j]!.toUpperCase(), g.head.headers[j + 1]!]);
      const wh = w.headers.map(([n, v]): [string, string] => [n.toUpperCase(), owsTrimmed(v)]);
      if (JSON.stringify(gh) !== JSON.stringify(wh)) return `#${i} headers ${JSON.stringify(gh)}, the corpus ${JSON.stringify(wh)}`;
    }
    if (w.body !== null && g.body !== w.body) return `#${i} body ${JSON.stringify(g.body.slice(0, 80))}, the corpus ${JSON.stringify(w.body.slice(0, 80))}`;
  }
  return null;
}

// ---- where this parser differs from a corpus, on purpose ----------------------------------------

const FRAGMENT = "'#' is no part of a request-target (RFC 9112 3.2: origin-form = absolute-path [ \"?\" query ]); "
  + 'clients strip the fragment, and a server that keeps it in the path or the query disagrees with one that drops it';
const QUOTE = "'\"' is outside RFC 3986; browsers always send it as %22";
const TOO_LONG = "gunicorn's default limits a field line to 8190 bytes; this parser limits the whole head to "
  + '--max-header-size (16384, as Node), which this head is within';
const ANY_METHOD = 'a method is any token (RFC 9110 9.1): which methods an app serves is its business, not the parser\'s';
const NOT_HTTP1 = 'the front speaks HTTP/1.0 and HTTP/1.1 only (RFC 9112 2.3); llhttp also reads RTSP and ICE';
const CONFIG = (what: string) => `gunicorn ran this with ${what}; the front has no such mode`;

/**
 * Cases where this parser differs from the corpus (the verdict, or what it delivers), and why. A
 * listed case that agrees fails the test, so this list stays true.
 */
const DIFFERS: Record<string, string> = {
  'gunicorn: valid/005': FRAGMENT,
  'gunicorn: valid/009': FRAGMENT,
  'gunicorn: valid/014': QUOTE,
  'gunicorn: valid/024': `${CONFIG('limit_request_line=8200, limit_request_field_size=8210')}: the head is 16408 bytes, over --max-header-size (431)`,
  'gunicorn: valid/027': 'a raw byte over 0x7e in the target (RFC 3986 2: percent-encode it); decoders read it as latin1 or UTF-8, two paths',
  'gunicorn: valid/028': `${CONFIG('strip_header_spaces')}: whitespace before a colon is refused (RFC 9112 5.1: MUST reject with 400)`,
  'gunicorn: valid/031compat': `${CONFIG('casefold_http_method')}: methods are case-sensitive (RFC 9110 9.1) and kept as sent`,
  'gunicorn: valid/040': 'gunicorn drops fields whose names hold "_"; this parser keeps every field as sent, and the environ '
    + 'and uwsgi vars leave such names out (README, Spoofing), so X_Foo never poses as X-Foo',
  'gunicorn: valid/099': 'Content-Length says 17914 but the file holds fewer body bytes: the connection ends inside the body, '
    + "so the request never completes; gunicorn's harness takes the end of its input as the end of the body",
  'gunicorn: valid/compat_obs_fold': `${CONFIG('permit_obsolete_folding')}: obs-fold is refused (RFC 9112 5.2 lets a server reject it with 400)`,
  'gunicorn: valid/compat_obs_fold_huge': `${CONFIG('permit_obsolete_folding')}: obs-fold is refused (RFC 9112 5.2)`,
  'gunicorn: valid/pp_01': CONFIG('the PROXY protocol'),
  'gunicorn: valid/pp_02': CONFIG('the PROXY protocol'),
  'gunicorn: valid/pp_04': CONFIG('the PROXY protocol (v2, binary)'),
  'gunicorn: valid/pp_05': CONFIG('the PROXY protocol (v2, binary)'),
  'gunicorn: invalid/003c': `"-bl" is a token: ${ANY_METHOD}`,
  'gunicorn: invalid/006': "gunicorn's default limits the request line to 4094 bytes; this parser limits the whole head to --max-header-size (16384)",
  'gunicorn: invalid/007': TOO_LONG,
  'gunicorn: invalid/008': TOO_LONG,
  'gunicorn: invalid/017': TOO_LONG,
  'gunicorn: invalid/009': 'more than 100 fields: the front refuses them with 431 over --max-headers (request-head.ts), after the parser',
  'gunicorn: invalid/010': CONFIG('limit_request_field_size=10'),
  'gunicorn: invalid/011': CONFIG('limit_request_fields=2'),
  'gunicorn: invalid/012': CONFIG('limit_request_field_size=98'),
  'gunicorn: invalid/limit_header_default_01': CONFIG('limit_request_field_size=0'),
  'gunicorn: invalid/019': `${CONFIG('forwarded_allow_ips="*"')}: which forwarding headers to trust is the front's, after the parser (forwarded.ts)`,
  'gunicorn: invalid/040': `${CONFIG('header_map="refuse"')}: names with "_" are left out of the environ instead`,
  'gunicorn: invalid/chunked_07': `${CONFIG('header_map="refuse"')}: names with "_" are left out of the environ instead`,
  'gunicorn: invalid/041': 'two Content-Type fields frame nothing; they go to the app as sent',
  'gunicorn: invalid/042': 'two Host fields: the front refuses them with 400 (request-head.ts, "more than one Host"), after the parser',
  'gunicorn: invalid/rfc9110_trailer_forbidden_cl_01': 'trailer fields are read and dropped, never forwarded: a Content-Length trailer changes nothing',
  'gunicorn: invalid/rfc9110_trailer_forbidden_host_01': 'trailer fields are read and dropped, never forwarded: a Host trailer changes nothing',
  'gunicorn: invalid/rfc9110_trailer_forbidden_te_01': 'trailer fields are read and dropped, never forwarded: a Transfer-Encoding trailer changes nothing',
  'llhttp: invalid.md: HTTP protocol and ANNOUNCE method': ANY_METHOD,
  'llhttp: invalid.md: Invalid method': ANY_METHOD,
  'llhttp: method.md: CONNECT with body': 'llhttp turns to a tunnel after a CONNECT head; this parser reads the body Content-Length '
    + 'declares (the front refuses CONNECT with 400 in request-head.ts)',
  'llhttp: method.md: M-SEARCH request': '* is for OPTIONS alone (RFC 9112 3.2.4); SSDP\'s M-SEARCH * is HTTP over UDP, not for this front',
  'llhttp: method.md: SOURCE request with ICE': NOT_HTTP1,
  'llhttp: method.md: OPTIONS request with RTSP': NOT_HTTP1,
  'llhttp: method.md: ANNOUNCE request with RTSP': NOT_HTTP1,
  'llhttp: sample.md: No HTTP version': 'HTTP/0.9 (a request line without a version) is not served',
  'llhttp: transfer-encoding.md: POST with `chunked` as last transfer-encoding': FRAGMENT,
  'llhttp: transfer-encoding.md: POST with `chunked` as last transfer-encoding (multiple headers)': FRAGMENT,
  'llhttp: uri.md: Quotes in URI': QUOTE,
  'llhttp: uri.md: Fragment in URI': FRAGMENT,
};

// ---- the http-garden records bugs, not verdicts: ours, with the RFC section for each -------------

/** Each payload's verdict, the requests delivered (complete) before it ends, and why. */
const GARDEN: Record<string, [Verdict, number, string]> = {
  'http-garden: server 1': ['refused', 0, 'chunk-size = 1*HEXDIG (RFC 9112 7.1): "0_2e" is not one'],
  'http-garden: server 2': ['refused', 0, 'NUL and bare CR in a field value (RFC 9110 5.5; RFC 9112 2.2)'],
  'http-garden: server 3': ['refused', 0, 'whitespace before the colon: MUST be rejected with 400 (RFC 9112 5.1)'],
  'http-garden: server 4': ['refused', 0, 'obs-fold (a line starting with HTAB) rejected with 400 (RFC 9112 5.2)'],
  'http-garden: server 5': ['refused', 0, 'HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 2.3), 1.0 or 1.1 here'],
  'http-garden: server 6': ['refused', 0, 'a method is a token (RFC 9110 9.1): \'"\', \':\', \'<\' are not tchars'],
  'http-garden: server 7': ['refused', 0, '"!" is no request-target form (RFC 9112 3.2)'],
  'http-garden: server 8': ['refused', 0, 'a field name is a token (RFC 9110 5.1): 0xef is not a tchar'],
  'http-garden: server 9': ['refused', 0, 'a bare LF ending the request line (RFC 9112 2.2: this server does not accept it)'],
  'http-garden: server 10': ['refused', 0, 'Content-Length = 1*DIGIT (RFC 9110 8.6)'],
  'http-garden: server 11': ['refused', 0, 'chunked applied twice (RFC 9112 6.1: a sender MUST NOT); the length is not reliable'],
  'http-garden: server 12': ['refused', 0, 'U+00A0 is not whitespace (RFC 9110 5.6.3: OWS is SP and HTAB): "\\xa0chunked\\xa0" is no coding'],
  'http-garden: server 13': ['refused', 0, 'a bare CR in a field value (RFC 9112 2.2)'],
  'http-garden: server 14': ['refused', 0, 'controls in a field name (RFC 9110 5.1: token)'],
  'http-garden: server 15': ['refused', 0, 'bare CRs in the request line (RFC 9112 2.2, 3)'],
  'http-garden: server 16': ['refused', 0, 'an empty Content-Length (RFC 9110 8.6: 1*DIGIT)'],
  'http-garden: server 17': ['refused', 0, 'an empty chunk-size line (RFC 9112 7.1: 1*HEXDIG)'],
  'http-garden: server 18': ['refused', 0, 'an empty field name (RFC 9110 5.1: token is 1*tchar)'],
  'http-garden: server 19': ['refused', 0, 'a bare LF ending a field line (RFC 9112 2.2)'],
  'http-garden: server 20': ['refused', 0, '0x85 in a field name is not a tchar (RFC 9110 5.1)'],
  'http-garden: server 21': ['refused', 0, 'Transfer-Encoding with Content-Length (RFC 9112 6.3: 400 and close, as a server may)'],
  'http-garden: server 22': ['refused', 0, 'chunk-size = 1*HEXDIG (RFC 9112 7.1)'],
  'http-garden: server 23': ['refused', 0, 'two different Content-Lengths (RFC 9112 6.3: unrecoverable, 400)'],
  'http-garden: server 24': ['refused', 0, 'HTTP-version is one digit each side (RFC 9112 2.3)'],
  'http-garden: server 25': ['refused', 0, 'chunked framing whatever the method (RFC 9112 6.3): a GET waiting for its chunks never completes'],
  'http-garden: server 26': ['refused', 0, 'Content-Length = 1*DIGIT (RFC 9110 8.6): no sign'],
  'http-garden: server 27': ['refused', 0, 'an empty field name (RFC 9110 5.1)'],
  'http-garden: server 28': ['refused', 0, 'a field line without a colon (RFC 9112 5)'],
  'http-garden: server 29': ['refused', 0, 'Content-Length = 1*DIGIT (RFC 9110 8.6)'],
  'http-garden: server 30': ['refused', 0, 'a bare CR where a line ends (RFC 9112 2.2)'],
  'http-garden: server 31': ['refused', 0, 'a bare CR inside a chunk-size line (RFC 9112 7.1.1)'],
  'http-garden: server 32': ['refused', 0, 'Content-Length 010 is ten (decimal, RFC 9110 8.6): eight bytes leave the body incomplete'],
  'http-garden: server 33': ['refused', 0, 'two different Content-Lengths (RFC 9112 6.3)'],
  'http-garden: server 34': ['refused', 0, 'a bare CR in a field value (RFC 9112 2.2)'],
  'http-garden: server 35': ['refused', 0, 'NUL in a field value (RFC 9110 5.5)'],
  'http-garden: server 36': ['refused', 0, 'a bare CR after a chunk extension (RFC 9112 7.1.1)'],
  'http-garden: server 37': ['refused', 0, 'a field line without a colon (RFC 9112 5)'],
  'http-garden: server 38': ['refused', 0, 'an empty Content-Length (RFC 9110 8.6)'],
  'http-garden: server 39': ['accepted', 1, '"X:POST / HTTP/1.1" after the last chunk is a trailer field (RFC 9112 7.1.2), read and dropped'],
  'http-garden: server 40': ['refused', 0, 'NUL in the method, a malformed version (RFC 9112 3)'],
  'http-garden: server 41': ['accepted', 1, '0x85 and 0xa0 are obs-text, kept in the value, not whitespace (RFC 9110 5.5, 5.6.3)'],
  'http-garden: server 42': ['refused', 0, 'an empty and a second Content-Length (RFC 9110 8.6; RFC 9112 6.3)'],
  'http-garden: server 43': ['refused', 0, 'NUL in a field value (RFC 9110 5.5)'],
  'http-garden: server 44': ['refused', 0, 'a request whose last coding is not chunked (RFC 9112 6.3: 400 and close)'],
  'http-garden: server 45': ['accepted', 1, 'after Connection: close nothing more is read (RFC 9112 9.6)'],
  'http-garden: server 46': ['refused', 0, '0xff is not whitespace (RFC 9110 5.6.3): "\\xffchunked\\xff" is no coding'],
  'http-garden: server 47': ['refused', 0, 'chunk-size = 1*HEXDIG (RFC 9112 7.1)'],
  'http-garden: server 48': ['accepted', 2, 'the second write is the 34-byte body of the second request (RFC 9112 6.3: Content-Length)'],
  'http-garden: transducer 1': ['refused', 0, 'Content-Length = 1*DIGIT (RFC 9110 8.6): no 0x'],
  'http-garden: transducer 2': ['refused', 0, 'chunk-size = 1*HEXDIG (RFC 9112 7.1)'],
  'http-garden: transducer 3': ['refused', 0, 'a bare CR in a chunk-size line (RFC 9112 7.1.1)'],
  'http-garden: transducer 4': ['refused', 0, 'two spaces after the target (RFC 9112 3: single SP)'],
  'http-garden: transducer 5': ['refused', 0, 'an empty Content-Length (RFC 9110 8.6)'],
  'http-garden: transducer 6': ['refused', 0, '0x85 in a field name is not a tchar (RFC 9110 5.1)'],
  'http-garden: transducer 7': ['refused', 0, 'what follows a chunk size is ";" chunk-ext or CRLF (RFC 9112 7.1.1)'],
  'http-garden: transducer 9': ['accepted', 1, 'an empty list element is ignored (RFC 9110 5.6.1): chunked (the front then refuses any value but exactly "chunked", request-head.ts)'],
  'http-garden: transducer 10': ['refused', 0, 'bare CRs in a field value (RFC 9112 2.2)'],
  'http-garden: transducer 11': ['refused', 0, 'an empty and a second Content-Length (RFC 9112 6.3)'],
  'http-garden: transducer 12': ['refused', 0, 'NUL in a field value (RFC 9110 5.5)'],
  'http-garden: transducer 13': ['refused', 0, 'chunk data ends with CRLF, not a bare LF (RFC 9112 7.1)'],
  'http-garden: transducer 14': ['refused', 0, 'a bare LF in a field name (RFC 9112 2.2)'],
  'http-garden: transducer 15': ['refused', 0, 'Transfer-Encoding with Content-Length (RFC 9112 6.3)'],
  'http-garden: transducer 16': ['refused', 0, 'bare LF line endings (RFC 9112 2.2: this server does not accept them)'],
  'http-garden: transducer 17': ['refused', 0, 'an empty line where a chunk size belongs (RFC 9112 7.1)'],
  'http-garden: transducer 18': ['refused', 0, 'Transfer-Encoding with Content-Length (RFC 9112 6.3)'],
  'http-garden: transducer 19': ['refused', 0, 'chunk-size = 1*HEXDIG (RFC 9112 7.1): no sign, no 0x'],
  'http-garden: transducer 20': ['refused', 0, 'a control in a field line without a colon (RFC 9112 5)'],
  'http-garden: transducer 21': ['accepted', 1, 'one request, a body of its Content-Length (RFC 9112 6.3)'],
  'http-garden: transducer 22': ['refused', 0, 'two different Content-Lengths (RFC 9112 6.3)'],
  'http-garden: transducer 23': ['refused', 0, 'Transfer-Encoding with Content-Length (RFC 9112 6.3)'],
  'http-garden: transducer 24': ['refused', 0, 'spaces before a chunk size (RFC 9112 7.1: 1*HEXDIG first)'],
  'http-garden: transducer 25': ['refused', 0, 'chunked applied twice (RFC 9112 6.1)'],
  'http-garden: bonus 3': ['refused', 1, 'one request, then a NUL that can begin no request line (RFC 9112 3): the next head never completes'],
  'http-garden: bonus 4': ['accepted', 1, 'an ordinary chunked request (RFC 9112 7.1)'],
  'http-garden: bonus-bonus 1': ['refused', 0, 'the HTTP/2 connection preface is not HTTP/1.1 (RFC 9113 3.4: prior knowledge only)'],
  'http-garden: bonus-bonus 2': ['refused', 0, 'the HTTP/2 connection preface is not HTTP/1.1 (RFC 9113 3.4)'],
};

// ---- the cases --------------------------------------------------------------------------------

const corpora = { gunicorn: gunicornCases(), llhttp: llhttpCases(), 'http-garden': gardenCases() };

test('every corpus is there and non-empty', () => {
  assert.ok(corpora.gunicorn.filter((c) => c.verdict === 'accepted').length >= 60, 'gunicorn valid/');
  assert.ok(corpora.gunicorn.filter((c) => c.verdict === 'refused').length >= 70, 'gunicorn invalid/');
  assert.ok(corpora.llhttp.length >= 100, `llhttp: ${corpora.llhttp.length} strict request cases`);
  assert.ok(corpora['http-garden'].length >= 70, `http-garden: ${corpora['http-garden'].length} payloads`);
});

const report: string[] = [];

for (const [name, cases] of Object.entries(corpora)) {
  test(`${name}: each case gets the corpus's verdict (or a listed one), whole, byte by byte and in random splits`, () => {
    assert.ok(cases.length > 0, `${name} is not empty`);
    const wrong: string[] = [];
    for (const c of cases) {
      const o = outcome(c);
      const listed = name === 'http-garden' ? GARDEN[c.id] : undefined;
      const expected = listed !== undefined ? listed[0] : c.verdict;
      const differs = DIFFERS[c.id];
      const line = `${c.id}: ${o.verdict}${o.error ? ` (${o.error})` : ''}${c.config ? ` [corpus config: ${c.config}]` : ''}`;
      report.push(line);
      if (expected === null || expected === undefined) {
        wrong.push(`${line}: no verdict listed for it`);
        continue;
      }
      let disagreement: string | null = null;
      if (o.verdict !== expected) disagreement = `the corpus says ${expected}`;
      else if (listed !== undefined && o.requests.length !== listed[1]) disagreement = `${o.requests.length} requests, ${listed[1]} listed`;
      else if (c.requests !== null && (o.verdict === 'accepted' || c.requests.length > 0)) disagreement = requestsDiffer(o.requests, c.requests);
      if (differs === undefined && disagreement !== null) wrong.push(`${line}: ${disagreement}`);
      if (differs !== undefined && disagreement === null) wrong.push(`${line}: listed as differing from the corpus (${differs}), but it agrees`);
    }
    assert.ok(wrong.length === 0, `${wrong.length} of ${cases.length}:\n${wrong.join('\n')}`);
  });
}

test('every listed difference and garden verdict names a case that exists', () => {
  const ids = new Set(Object.values(corpora).flat().map((c) => c.id));
  for (const id of [...Object.keys(DIFFERS), ...Object.keys(GARDEN)]) assert.ok(ids.has(id), `no case ${id}`);
  if (process.env.HTTP_CORPUS_REPORT) console.log(report.join('\n'));
});

test.run();
