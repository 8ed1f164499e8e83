// raysfu demo room: browser side.
//
// Joins the room named in the URL (?room=demo&peer=alice[&debugReceiveLoss=0.05]) over the
// WebSocket signaling of demo/server.py, publishes the microphone and the camera through one
// mediasoup-client send transport and consumes every other peer through one recv transport.
//
// Signaling messages (JSON, the mediasoup-demo / protoo pattern):
//   request:      {request: true, id, method, data}
//   response:     {response: true, id, ok: true, data} | {response: true, id, ok: false, error}
//   notification: {notification: true, method, data}
// Both sides send requests: the server asks the client to consume with `newConsumer`.
//
// For tests the page exposes window.raysfu = {ready: Promise, stats: async () => ({inbound, outbound}),
// setPreferredLayers(consumerId, spatialLayer, temporalLayer?), layers() -> {consumerId: {current,
// width, height}}}. The camera is sent as three simulcast layers (?simulcast=0: one); each remote
// video tile has a layer selector and shows the layer it receives and the decoded size.

import { Device } from 'mediasoup-client';

const params = new URLSearchParams(window.location.search);
const roomId = params.get('room') || 'demo';
const peerName = params.get('peer') || `peer-${Math.random().toString(36).slice(2, 7)}`;
const debugReceiveLoss = params.has('debugReceiveLoss') ? Number(params.get('debugReceiveLoss')) : undefined;
// Simulcast (issue 5): the camera goes out as three VP8 encodings unless ?simulcast=0, each
// with three temporal layers (L1T3, as mediasoup's demo asks: without a scalabilityMode the SFU
// takes one temporal layer and forwards only the base one).
const simulcast = params.get('simulcast') !== '0';
const SIMULCAST_ENCODINGS = [
  { rid: 'r0', scaleResolutionDownBy: 4, maxBitrate: 150000, scalabilityMode: 'L1T3' },
  { rid: 'r1', scaleResolutionDownBy: 2, maxBitrate: 400000, scalabilityMode: 'L1T3' },
  { rid: 'r2', scaleResolutionDownBy: 1, maxBitrate: 1200000, scalabilityMode: 'L1T3' },
];

const SCTP_CAPABILITIES = { numStreams: { OS: 1024, MIS: 1024 } };

const statusEl = document.getElementById('status');
const tilesEl = document.getElementById('tiles');

function setStatus(text) {
  if (statusEl) statusEl.textContent = text;
}

// ---------------------------------------------------------------- signaling

class Signaling {
  constructor(url) {
    this._ws = new WebSocket(url);
    this._nextId = 1;
    this._pending = new Map(); // id -> {resolve, reject}
    this.onRequest = async () => { throw new Error('no request handler'); };
    this.onNotification = () => {};
    this.opened = new Promise((resolve, reject) => {
      this._ws.addEventListener('open', () => resolve());
      this._ws.addEventListener('error', () => reject(new Error('WebSocket error')));
    });
    this._ws.addEventListener('close', () => {
      for (const { reject } of this._pending.values()) reject(new Error('WebSocket closed'));
      this._pending.clear();
      setStatus('disconnected');
    });
    this._ws.addEventListener('message', (event) => this._onMessage(event.data));
  }

  request(method, data = {}) {
    const id = this._nextId++;
    this._ws.send(JSON.stringify({ request: true, id, method, data }));
    return new Promise((resolve, reject) => this._pending.set(id, { resolve, reject, method }));
  }

  async _onMessage(raw) {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch (error) {
      console.error('bad signaling message', raw);
      return;
    }
    if (msg.response) {
      const pending = this._pending.get(msg.id);
      if (!pending) return;
      this._pending.delete(msg.id);
      if (msg.ok) pending.resolve(msg.data);
      else pending.reject(new Error(`${pending.method}: ${msg.error}`));
    } else if (msg.request) {
      try {
        const data = await this.onRequest(msg.method, msg.data);
        this._ws.send(JSON.stringify({ response: true, id: msg.id, ok: true, data: data || {} }));
      } catch (error) {
        console.error(`request ${msg.method} failed`, error);
        this._ws.send(JSON.stringify({ response: true, id: msg.id, ok: false, error: String(error) }));
      }
    } else if (msg.notification) {
      this.onNotification(msg.method, msg.data);
    }
  }
}

// ---------------------------------------------------------------- tiles

const tiles = new Map(); // peerId -> {el, video, audio, label, stream}

function tileFor(peerId, name, local = false) {
  let tile = tiles.get(peerId);
  if (tile) return tile;
  const el = document.createElement('div');
  el.className = local ? 'tile local' : 'tile';
  el.dataset.peerId = peerId;
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true;
  const audio = document.createElement('audio');
  audio.autoplay = true;
  const label = document.createElement('div');
  label.className = 'name';
  label.textContent = local ? `${name} (you)` : name;
  el.append(video, audio, label);
  tilesEl.append(el);
  tile = { el, video, audio, label, videoStream: new MediaStream(), audioStream: new MediaStream() };
  video.srcObject = tile.videoStream;
  audio.srcObject = tile.audioStream;
  tiles.set(peerId, tile);
  return tile;
}

function removeTile(peerId) {
  const tile = tiles.get(peerId);
  if (!tile) return;
  if (tile.layerTimer) clearInterval(tile.layerTimer);
  tile.el.remove();
  tiles.delete(peerId);
}

function attachTrack(tile, track) {
  const stream = track.kind === 'video' ? tile.videoStream : tile.audioStream;
  stream.addTrack(track);
  const el = track.kind === 'video' ? tile.video : tile.audio;
  el.play().catch(() => {});
}

function detachTrack(tile, track) {
  const stream = track.kind === 'video' ? tile.videoStream : tile.audioStream;
  stream.removeTrack(track);
}

// ---------------------------------------------------------------- layers (simulcast / SVC)

// Number of spatial layers of a consumer's stream, from its scalabilityMode ("L3T1", "S2T3").
function spatialLayersOf(rtpParameters) {
  const mode = ((rtpParameters.encodings || [])[0] || {}).scalabilityMode || '';
  const m = /^[LS](\d+)T(\d+)/.exec(mode);
  return m ? Number(m[1]) : 1;
}

// A tile of a simulcast/SVC consumer gets a layer selector (setPreferredLayers on the server)
// and a line with the layer received now and the decoded resolution.
function addLayerControls(tile, consumerId, numLayers, preferred, requestLayers) {
  if (!tile.layers) {
    const box = document.createElement('div');
    box.className = 'layers';
    const select = document.createElement('select');
    select.title = 'preferred spatial layer';
    const info = document.createElement('span');
    info.className = 'layer-info';
    box.append(select, info);
    tile.el.append(box);
    tile.layers = { box, select, info, consumerId: null, current: null };
    select.addEventListener('change', () => {
      const spatialLayer = Number(select.value);
      requestLayers(tile.layers.consumerId, spatialLayer).catch((error) => console.error(error));
    });
    tile.layerTimer = setInterval(() => updateLayerInfo(tile), 500);
  }
  const { select } = tile.layers;
  select.textContent = '';
  for (let i = 0; i < numLayers; i++) {
    const option = document.createElement('option');
    option.value = String(i);
    option.textContent = `S${i}`;
    select.append(option);
  }
  const pref = preferred && Number.isInteger(preferred.spatialLayer) ? preferred.spatialLayer : numLayers - 1;
  select.value = String(Math.min(pref, numLayers - 1));
  tile.layers.consumerId = consumerId;
  updateLayerInfo(tile);
}

function updateLayerInfo(tile) {
  if (!tile.layers) return;
  const { info, current } = tile.layers;
  const layer = current ? `S${current.spatialLayer}T${current.temporalLayer}` : 'none';
  const v = tile.video;
  const size = v.videoWidth ? `${v.videoWidth}x${v.videoHeight}` : '-';
  info.textContent = ` receiving ${layer} · ${size}`;
}

// ---------------------------------------------------------------- room

const consumers = new Map(); // consumerId -> Consumer (appData: {peerId, peerName})
const producers = new Map(); // producerId -> Producer
const peerNames = new Map(); // peerId -> name
const consumerTiles = new Map(); // consumerId -> tile (simulcast/SVC video consumers)
let signaling = null;

// Ask the server for other layers of a simulcast/SVC consumer (also the test API).
async function setPreferredLayers(consumerId, spatialLayer, temporalLayer) {
  const data = { consumerId, spatialLayer };
  if (temporalLayer !== undefined) data.temporalLayer = temporalLayer;
  const { preferredLayers } = await signaling.request('setConsumerPreferredLayers', data);
  const tile = consumerTiles.get(consumerId);
  if (tile && tile.layers) tile.layers.select.value = String(preferredLayers.spatialLayer);
  return preferredLayers;
}

// What each simulcast/SVC tile shows: {consumerId: {current, width, height}} (tests).
function layers() {
  const out = {};
  for (const [consumerId, tile] of consumerTiles) {
    out[consumerId] = {
      current: tile.layers ? tile.layers.current : null,
      width: tile.video.videoWidth,
      height: tile.video.videoHeight,
    };
  }
  return out;
}

function pickStat(report, type, kind) {
  for (const s of report.values()) {
    if (s.type === type && (!kind || s.kind === kind || s.mediaType === kind)) return s;
  }
  return undefined;
}

async function stats() {
  const inbound = [];
  for (const consumer of consumers.values()) {
    if (consumer.closed) continue;
    const s = pickStat(await consumer.getStats(), 'inbound-rtp', consumer.kind) || {};
    inbound.push({
      peerName: consumer.appData.peerName,
      kind: consumer.kind,
      framesDecoded: s.framesDecoded || 0,
      frameWidth: s.frameWidth || 0,
      frameHeight: s.frameHeight || 0,
      packetsReceived: s.packetsReceived || 0,
      packetsLost: s.packetsLost || 0,
      nackCount: s.nackCount || 0,
      pliCount: s.pliCount || 0,
      bytesReceived: s.bytesReceived || 0,
    });
  }
  const outbound = [];
  for (const producer of producers.values()) {
    if (producer.closed) continue;
    // One row per producer: counters summed over its simulcast encodings, the size of the
    // largest one (what a consumer with the default preferred layers receives).
    const row = {
      peerName, kind: producer.kind, packetsSent: 0, retransmittedPacketsSent: 0, nackCount: 0,
      pliCount: 0, frameWidth: 0, frameHeight: 0, layers: [],
    };
    for (const s of (await producer.getStats()).values()) {
      if (s.type !== 'outbound-rtp' || (s.kind || s.mediaType) !== producer.kind) continue;
      row.packetsSent += s.packetsSent || 0;
      row.retransmittedPacketsSent += s.retransmittedPacketsSent || 0;
      row.nackCount += s.nackCount || 0;
      row.pliCount += s.pliCount || 0;
      if ((s.frameWidth || 0) > row.frameWidth) {
        row.frameWidth = s.frameWidth || 0;
        row.frameHeight = s.frameHeight || 0;
      }
      if (s.rid) row.layers.push({ rid: s.rid, frameWidth: s.frameWidth || 0, pliCount: s.pliCount || 0 });
    }
    outbound.push(row);
  }
  return { inbound, outbound };
}

async function run() {
  setStatus(`joining room "${roomId}" as ${peerName}…`);
  const wsUrl = `${window.location.protocol === 'https:' ? 'wss' : 'ws'}://${window.location.host}/ws`;
  const sig = new Signaling(wsUrl);
  signaling = sig;
  await sig.opened;

  let recvTransport = null;

  sig.onRequest = async (method, data) => {
    if (method !== 'newConsumer') throw new Error(`unknown request ${method}`);
    const consumer = await recvTransport.consume({
      id: data.id,
      producerId: data.producerId,
      kind: data.kind,
      rtpParameters: data.rtpParameters,
      streamId: `${data.peerId}-mic-webcam`,
      appData: { peerId: data.peerId, peerName: data.peerName },
    });
    consumers.set(consumer.id, consumer);
    peerNames.set(data.peerId, data.peerName);
    const tile = tileFor(data.peerId, data.peerName);
    attachTrack(tile, consumer.track);
    if (data.kind === 'video' && (data.type === 'simulcast' || data.type === 'svc')) {
      consumerTiles.set(consumer.id, tile);
      addLayerControls(tile, consumer.id, spatialLayersOf(data.rtpParameters), data.preferredLayers,
        (consumerId, spatialLayer) => setPreferredLayers(consumerId, spatialLayer));
    }
    consumer.on('transportclose', () => consumers.delete(consumer.id));
    return {};
  };

  sig.onNotification = (method, data) => {
    switch (method) {
      case 'newPeer':
        peerNames.set(data.id, data.name);
        tileFor(data.id, data.name);
        break;
      case 'peerClosed':
        peerNames.delete(data.peerId);
        removeTile(data.peerId);
        break;
      case 'consumerClosed': {
        const consumer = consumers.get(data.consumerId);
        if (!consumer) break;
        consumers.delete(data.consumerId);
        consumerTiles.delete(data.consumerId);
        const tile = tiles.get(consumer.appData.peerId);
        if (tile) detachTrack(tile, consumer.track);
        consumer.close();
        break;
      }
      case 'consumerLayersChanged': {
        const tile = consumerTiles.get(data.consumerId);
        if (tile && tile.layers && tile.layers.consumerId === data.consumerId) {
          tile.layers.current = data.layers;
          updateLayerInfo(tile);
        }
        break;
      }
      case 'producerPaused':
      case 'producerResumed': {
        const tile = tiles.get(data.peerId);
        if (tile) tile.el.classList.toggle(`${data.kind}-paused`, method === 'producerPaused');
        break;
      }
      default:
        console.debug('notification', method, data);
    }
  };

  const joinData = { roomId, peerName };
  if (debugReceiveLoss !== undefined) joinData.debugReceiveLoss = debugReceiveLoss;
  const { routerRtpCapabilities, peers } = await sig.request('join', joinData);

  const device = new Device();
  await device.load({ routerRtpCapabilities });

  const local = tileFor('local', peerName, true);

  for (const peer of peers) {
    peerNames.set(peer.id, peer.name);
    tileFor(peer.id, peer.name);
  }

  const makeTransport = async (direction) => {
    const options = await sig.request('createWebRtcTransport', {
      direction,
      sctpCapabilities: SCTP_CAPABILITIES,
    });
    const transport = direction === 'send'
      ? device.createSendTransport(options)
      : device.createRecvTransport(options);
    transport.on('connect', ({ dtlsParameters }, callback, errback) => {
      sig.request('connectWebRtcTransport', { transportId: transport.id, dtlsParameters })
        .then(callback, errback);
    });
    if (direction === 'send') {
      transport.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
        sig.request('produce', { transportId: transport.id, kind, rtpParameters, appData })
          .then(({ id }) => callback({ id }), errback);
      });
    }
    transport.on('connectionstatechange', (state) => console.debug(`${direction} transport ${state}`));
    return transport;
  };

  const sendTransport = await makeTransport('send');
  recvTransport = await makeTransport('recv');

  // The server now creates consumers for every existing producer (newConsumer requests).
  await sig.request('setRtpCapabilities', { rtpCapabilities: device.recvRtpCapabilities });

  const media = await navigator.mediaDevices.getUserMedia({
    audio: true,
    video: { width: { ideal: 640 }, height: { ideal: 480 } },
  });
  for (const track of media.getTracks()) {
    if (!device.canProduce(track.kind)) continue;
    const options = { track, appData: { source: track.kind === 'audio' ? 'mic' : 'webcam' } };
    if (track.kind === 'video' && simulcast) {
      options.encodings = SIMULCAST_ENCODINGS;
      options.codecOptions = { videoGoogleStartBitrate: 1000 };
    }
    const producer = await sendTransport.produce(options);
    producers.set(producer.id, producer);
    if (track.kind === 'video') attachTrack(local, track);
  }

  setStatus(`room "${roomId}": ${peerName}, publishing ${producers.size} track(s)`);
}

const ready = run();
ready.catch((error) => {
  console.error('raysfu demo failed', error);
  setStatus(`error: ${error.message || error}`);
});

window.raysfu = { ready, stats, roomId, peerName, consumers, producers, setPreferredLayers, layers };
