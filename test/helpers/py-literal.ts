// Evaluates the small subset of Python that gunicorn's request corpus (tests/requests/*.py) is
// written in: imports, assignments, dict/list/tuple/str/bytes/int literals, uri("..."),
// Config() and cfg.set(k, v), and str.replace/encode/decode. Enough to read what each file
// expects without running Python; anything else is an error, so a new construct is noticed.

/** A Python value: bytes are a Buffer, str a string, tuples and lists arrays, dicts Maps. */
export type PyValue = string | Buffer | number | boolean | null | PyValue[] | Map<string, PyValue> | PyName;

/** A name that was imported and never assigned (gunicorn's exception classes). */
export class PyName {
  readonly name: string;
  constructor(name: string) {
    this.name = name;
  }
}

interface Token {
  kind: 'str' | 'bytes' | 'num' | 'name' | 'op' | 'nl' | 'end';
  text: string;
  value?: string | Buffer | number;
}

export interface PyModule {
  vars: Map<string, PyValue>;
  /** cfg.set(name, value) calls, in order. */
  config: [string, PyValue][];
}

const SIMPLE_ESCAPES: Record<string, string> = {
  '\\': '\\', "'": "'", '"': '"', a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v',
};

function unescape(body: string, bytes: boolean, raw: boolean): string {
  if (raw) return body;
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const e = body[++i]!;
    if (e === '\n') continue;
    if (e in SIMPLE_ESCAPES) out += SIMPLE_ESCAPES[e];
    else if (e === 'x') {
      out += String.fromCharCode(parseInt(body.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (!bytes && e === 'u') {
      out += String.fromCharCode(parseInt(body.slice(i + 1, i + 5), 16));
      i += 4;
    } else if (/[0-7]/.test(e)) {
      const m = /^[0-7]{1,3}/.exec(body.slice(i))![0];
      out += String.fromCharCode(parseInt(m, 8));
      i += m.length - 1;
    } else out += `\\${e}`;
  }
  return out;
}

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let depth = 0;
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (c === '#') {
      while (i < src.length && src[i] !== '\n') i++;
    } else if (c === '\n') {
      if (depth === 0) out.push({ kind: 'nl', text: '\n' });
      i++;
    } else if (c === ' ' || c === '\t' || c === '\r') {
      i++;
    } else if (c === '\\' && src[i + 1] === '\n') {
      i += 2;
    } else {
      const str = /^([bBrRuU]{0,2})('''|"""|'|")/.exec(src.slice(i, i + 5));
      if (str !== null) {
        const prefix = str[1]!.toLowerCase();
        const quote = str[2]!;
        let j = i + str[0].length;
        const start = j;
        while (!src.startsWith(quote, j)) {
          if (j >= src.length) throw new Error(`unterminated string at ${i}`);
          j += src[j] === '\\' ? 2 : 1;
        }
        const bytes = prefix.includes('b');
        const text = unescape(src.slice(start, j), bytes, prefix.includes('r'));
        out.push(bytes ? { kind: 'bytes', text, value: Buffer.from(text, 'latin1') } : { kind: 'str', text, value: text });
        i = j + quote.length;
        continue;
      }
      const word = /^[A-Za-z_][A-Za-z0-9_]*|^[0-9]+/.exec(src.slice(i));
      if (word !== null) {
        const w = word[0];
        out.push(/^[0-9]/.test(w) ? { kind: 'num', text: w, value: Number(w) } : { kind: 'name', text: w });
        i += w.length;
        continue;
      }
      if ('([{'.includes(c)) depth++;
      if (')]}'.includes(c)) depth--;
      if (!'()[]{},:.='.includes(c)) throw new Error(`unexpected ${JSON.stringify(c)} at ${i}`);
      out.push({ kind: 'op', text: c });
      i++;
    }
  }
  out.push({ kind: 'end', text: '' });
  return out;
}

class Evaluator {
  readonly #t: Token[];
  #p = 0;
  readonly mod: PyModule = { vars: new Map(), config: [] };
  readonly #imported = new Set<string>();

  constructor(src: string) {
    this.#t = tokenize(src);
  }

  #peek(): Token {
    return this.#t[this.#p]!;
  }

  #next(): Token {
    return this.#t[this.#p++]!;
  }

  #expect(text: string): void {
    const t = this.#next();
    if (t.text !== text || (t.kind !== 'op' && t.kind !== 'name')) throw new Error(`expected ${text}, got ${t.kind} ${JSON.stringify(t.text)}`);
  }

  run(): PyModule {
    for (;;) {
      const t = this.#peek();
      if (t.kind === 'end') return this.mod;
      if (t.kind === 'nl') {
        this.#p++;
        continue;
      }
      if (t.kind === 'name' && t.text === 'from') {
        this.#p++;
        while (this.#peek().text !== 'import') this.#p++;
        this.#p++;
        for (;;) {
          this.#imported.add(this.#next().text);
          if (this.#peek().text !== ',') break;
          this.#p++;
        }
        continue;
      }
      if (t.kind === 'name' && this.#t[this.#p + 1]!.text === '=') {
        this.#p += 2;
        this.mod.vars.set(t.text, this.#expr());
        continue;
      }
      if (t.kind === 'name' && t.text === 'cfg' && this.#t[this.#p + 1]!.text === '.') {
        this.#p += 2;
        this.#expect('set');
        this.#expect('(');
        const key = this.#expr();
        this.#expect(',');
        const value = this.#expr();
        this.#expect(')');
        this.mod.config.push([String(key), value]);
        continue;
      }
      throw new Error(`unexpected statement at ${JSON.stringify(t.text)}`);
    }
  }

  #expr(): PyValue {
    let v = this.#atom();
    while (this.#peek().text === '.') {
      this.#p++;
      const method = this.#next().text;
      this.#expect('(');
      const args: PyValue[] = [];
      while (this.#peek().text !== ')') {
        args.push(this.#expr());
        if (this.#peek().text === ',') this.#p++;
      }
      this.#p++;
      v = callMethod(v, method, args);
    }
    return v;
  }

  #atom(): PyValue {
    const t = this.#next();
    if (t.kind === 'str' || t.kind === 'bytes') {
      // Adjacent literals concatenate.
      let v = t.value as string | Buffer;
      while (this.#peek().kind === t.kind) {
        const more = this.#next().value as string | Buffer;
        v = typeof v === 'string' ? v + (more as string) : Buffer.concat([v, more as Buffer]);
      }
      return v;
    }
    if (t.kind === 'num') return t.value as number;
    if (t.kind === 'op' && (t.text === '(' || t.text === '[')) {
      const close = t.text === '(' ? ')' : ']';
      const items: PyValue[] = [];
      let comma = false;
      while (this.#peek().text !== close) {
        items.push(this.#expr());
        if (this.#peek().text === ',') {
          comma = true;
          this.#p++;
        }
      }
      this.#p++;
      return t.text === '(' && items.length === 1 && !comma ? items[0]! : items;
    }
    if (t.kind === 'op' && t.text === '{') {
      const map = new Map<string, PyValue>();
      while (this.#peek().text !== '}') {
        const key = this.#expr();
        this.#expect(':');
        map.set(String(key), this.#expr());
        if (this.#peek().text === ',') this.#p++;
      }
      this.#p++;
      return map;
    }
    if (t.kind === 'name') {
      if (t.text === 'True' || t.text === 'False') return t.text === 'True';
      if (t.text === 'None') return null;
      if (this.#peek().text === '(') {
        this.#p++;
        const args: PyValue[] = [];
        while (this.#peek().text !== ')') {
          args.push(this.#expr());
          if (this.#peek().text === ',') this.#p++;
        }
        this.#p++;
        if (t.text === 'uri') return new Map<string, PyValue>([['raw', args[0]!]]);
        if (t.text === 'Config') return null;
        throw new Error(`unknown function ${t.text}`);
      }
      const v = this.mod.vars.get(t.text);
      if (v !== undefined) return v;
      if (this.#imported.has(t.text)) return new PyName(t.text);
      throw new Error(`unknown name ${t.text}`);
    }
    throw new Error(`unexpected ${t.kind} ${JSON.stringify(t.text)}`);
  }
}

function callMethod(v: PyValue, method: string, args: PyValue[]): PyValue {
  if (method === 'replace' && typeof v === 'string') return v.split(args[0] as string).join(args[1] as string);
  if (method === 'replace' && Buffer.isBuffer(v)) {
    return Buffer.from(v.toString('latin1').split((args[0] as Buffer).toString('latin1')).join((args[1] as Buffer).toString('latin1')), 'latin1');
  }
  if (method === 'decode' && Buffer.isBuffer(v)) return v.toString(args[0] === 'latin1' || args[0] === 'latin-1' ? 'latin1' : 'utf8');
  if (method === 'encode' && typeof v === 'string') return Buffer.from(v, args[0] === 'latin1' || args[0] === 'latin-1' ? 'latin1' : 'utf8');
  throw new Error(`unknown method ${method}`);
}

/** Runs a corpus .py file's statements; throws on anything outside the subset. */
export function evalPy(src: string): PyModule {
  return new Evaluator(src).run();
}
