// The bytes every configuration serves: the seed's hello page and a 1 MiB download whose byte
// i is i % 251 (the Python app builds the same bytes), built once when the module loads.
export const HELLO = Buffer.from('<h1>Hello, web</h1>');

export const ONE_MIB = Buffer.allocUnsafe(1 << 20);
for (let i = 0; i < ONE_MIB.length; i++) ONE_MIB[i] = i % 251;
