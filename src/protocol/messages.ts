// The protobuf messages of proto/tsgi.proto, as generated static code.
import { tsgi } from './generated/tsgi.js';
export const { Hello, HeaderBlock, Request, Response, Trailers, Reset, Window, GoAway, Ping } = tsgi;
export type { tsgi };
