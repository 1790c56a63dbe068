// Coalesces the frames written to a socket during one tick into a single writev: the first
// write of a tick corks the socket, and a nextTick uncorks it.
import type { Socket } from 'node:net';

export function socketWriter(socket: Socket): (chunk: Uint8Array) => void {
  let corked = false;
  const uncork = () => {
    corked = false;
    socket.uncork();
  };
  return (chunk) => {
    if (socket.destroyed || !socket.writable) return;
    if (!corked) {
      corked = true;
      socket.cork();
      process.nextTick(uncork);
    }
    socket.write(chunk);
  };
}
