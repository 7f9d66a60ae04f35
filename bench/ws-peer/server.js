// bench/ws-peer/server.js — the idiomatic Node.js `ws` broadcast server that
// bench/ws.sh measures parleyd against. Every text frame a client sends is
// broadcast to every client of its room (chosen by ?room= when connecting;
// one room = the plain broadcast server), wrapped as the event Parley's load
// generator reads: {"type":"message.new","seq":N,"message":<frame>}. The frame
// is built once per message; nothing is stored: no database, no durability.
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.env.PORT || 8461);
const wss = new WebSocketServer({ host: '127.0.0.1', port, backlog: 4096 });
const rooms = new Map();                  // room name -> { seq, clients }

wss.on('connection', (ws, req) => {
  const name = new URL(req.url, 'http://peer').searchParams.get('room') || '';
  let room = rooms.get(name);
  if (!room) rooms.set(name, (room = { seq: 0, clients: new Set() }));
  room.clients.add(ws);
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    const frame = Buffer.from(`{"type":"message.new","seq":${++room.seq},"message":${data}}`);
    for (const client of room.clients)
      if (client.readyState === 1) client.send(frame, { binary: false });
  });
  ws.on('close', () => room.clients.delete(ws));
});
wss.on('listening', () => console.log(`ws peer: ws://127.0.0.1:${port}/?room=NAME`));
