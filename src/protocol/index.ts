// The protocol core: framing, messages, the header table, the connection state machine and
// the errors module. No I/O here: the front and the backend bring the sockets.
export * from './constants.js';
export * from './errors.js';
export * from './frame.js';
export * from './header-table.js';
export * from './connection.js';
export * from './messages.js';
export * from './value-table.js';
