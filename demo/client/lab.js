// raysfu browser lab: mediasoup-client in a bare page, driven by Python tests.
//
// The page does no signaling of its own. A test (tests/e2e/lab.py) creates the server objects
// with raysfu's Python API and hands their parameters in through page.evaluate(); the
// transports' `connect`, `produce` and `producedata` events go back to Python through
// window.labSignal(method, data), a function the test exposes with page.expose_function().
//
// window.lab:
//   load(routerRtpCapabilities) -> {rtpCapabilities, sctpCapabilities}
//   createTransport(direction, params) -> transport id   (params: id, iceParameters,
//       iceCandidates, dtlsParameters, sctpParameters as the server returned them)
//   produce({transportId, kind, encodings, codecMime, codecOptions, appData}) -> producer id
//   consume({transportId, id, producerId, kind, rtpParameters}) -> consumer id
//   produceData({transportId, ordered, maxPacketLifeTime, maxRetransmits, label, protocol})
//   consumeData({transportId, id, dataProducerId, sctpStreamParameters, label, protocol})
//   sendData(dataProducerId, messages) -> number sent
//   setTrackEnabled(producerId, enabled)
//   stats() -> {inbound: [...], outbound: [...]}  (see tests/e2e/lab.py)
//   transports, producers, consumers, dataProducers, dataConsumers: Maps by id
//   received: {dataConsumerId: [message, ...]}

import * as mediasoupClient from 'mediasoup-client';

const SCTP_CAPABILITIES = { numStreams: { OS: 1024, MIS: 1024 } };

const lab = {
  device: null,
  transports: new Map(),
  producers: new Map(),
  consumers: new Map(),
  dataProducers: new Map(),
  dataConsumers: new Map(),
  received: {},
  media: null,
};

function signal(method, data) {
  if (typeof window.labSignal !== 'function') throw new Error('window.labSignal is not exposed');
  return window.labSignal(method, data);
}

lab.load = async (routerRtpCapabilities) => {
  lab.device = new mediasoupClient.Device();
  await lab.device.load({ routerRtpCapabilities });
  return { rtpCapabilities: lab.device.recvRtpCapabilities, sctpCapabilities: SCTP_CAPABILITIES };
};

lab.createTransport = (direction, params) => {
  const options = {
    id: params.id,
    iceParameters: params.iceParameters,
    iceCandidates: params.iceCandidates,
    dtlsParameters: params.dtlsParameters,
  };
  if (params.sctpParameters) options.sctpParameters = params.sctpParameters;
  const transport = direction === 'send'
    ? lab.device.createSendTransport(options)
    : lab.device.createRecvTransport(options);
  transport.on('connect', ({ dtlsParameters }, callback, errback) => {
    signal('connect', { transportId: transport.id, dtlsParameters }).then(() => callback(), errback);
  });
  if (direction === 'send') {
    transport.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
      signal('produce', { transportId: transport.id, kind, rtpParameters, appData })
        .then((id) => callback({ id }), errback);
    });
    transport.on('producedata', ({ sctpStreamParameters, label, protocol, appData }, callback, errback) => {
      signal('producedata', { transportId: transport.id, sctpStreamParameters, label, protocol, appData })
        .then((id) => callback({ id }), errback);
    });
  }
  transport.on('connectionstatechange', (state) => console.debug(`${direction} transport ${state}`));
  lab.transports.set(transport.id, transport);
  return transport.id;
};

async function userMedia(kind) {
  if (!lab.media) lab.media = {};
  if (!lab.media[kind]) {
    const constraints = kind === 'audio'
      ? { audio: true }
      : { video: { width: { ideal: 640 }, height: { ideal: 480 } } };
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    lab.media[kind] = stream.getTracks()[0];
  }
  // Each producer gets its own clone, so muting one leaves the others alone.
  return lab.media[kind].clone();
}

lab.produce = async ({ transportId, kind, encodings, codecMime, codecOptions, appData }) => {
  const transport = lab.transports.get(transportId);
  const track = await userMedia(kind);
  const options = { track, appData: appData || {} };
  if (encodings) options.encodings = encodings;
  if (codecOptions) options.codecOptions = codecOptions;
  if (codecMime) {
    const codec = lab.device.rtpCapabilities.codecs.find(
      (c) => c.mimeType.toLowerCase() === codecMime.toLowerCase());
    if (!codec) throw new Error(`codec ${codecMime} not in the device's capabilities`);
    options.codec = codec;
  }
  const producer = await transport.produce(options);
  lab.producers.set(producer.id, producer);
  if (kind === 'video' && producer.rtpSender) {
    // Tests count layers and widths: keep the encoder from scaling resolution down when the
    // machine is busy (libwebrtc's CPU-overuse adaptation), which would drop a layer.
    try {
      const p = producer.rtpSender.getParameters();
      p.degradationPreference = 'maintain-resolution';
      await producer.rtpSender.setParameters(p);
    } catch (error) {
      console.warn(`degradationPreference not applied: ${error}`);
    }
  }
  return producer.id;
};

lab.consume = async ({ transportId, id, producerId, kind, rtpParameters }) => {
  const transport = lab.transports.get(transportId);
  const consumer = await transport.consume({ id, producerId, kind, rtpParameters });
  lab.consumers.set(consumer.id, consumer);
  // Play it, so the decoder runs as it would in an application.
  const el = document.createElement(kind === 'video' ? 'video' : 'audio');
  el.autoplay = true;
  el.muted = true;
  el.playsInline = true;
  el.srcObject = new MediaStream([consumer.track]);
  document.body.append(el);
  el.play().catch(() => {});
  return consumer.id;
};

lab.produceData = async ({ transportId, ...options }) => {
  const transport = lab.transports.get(transportId);
  const dataProducer = await transport.produceData(options);
  lab.dataProducers.set(dataProducer.id, dataProducer);
  if (dataProducer.readyState !== 'open') {
    await new Promise((resolve, reject) => {
      dataProducer.on('open', resolve);
      dataProducer.on('error', reject);
    });
  }
  return dataProducer.id;
};

lab.consumeData = async ({ transportId, id, dataProducerId, sctpStreamParameters, label, protocol }) => {
  const transport = lab.transports.get(transportId);
  const dataConsumer = await transport.consumeData({ id, dataProducerId, sctpStreamParameters, label, protocol });
  lab.dataConsumers.set(dataConsumer.id, dataConsumer);
  lab.received[dataConsumer.id] = [];
  dataConsumer.on('message', (message) => {
    lab.received[dataConsumer.id].push(typeof message === 'string' ? message : `<binary ${message.byteLength || message.size}>`);
  });
  if (dataConsumer.readyState !== 'open') {
    await new Promise((resolve, reject) => {
      dataConsumer.on('open', resolve);
      dataConsumer.on('error', reject);
    });
  }
  return dataConsumer.id;
};

lab.sendData = (dataProducerId, messages) => {
  const dataProducer = lab.dataProducers.get(dataProducerId);
  for (const m of messages) dataProducer.send(m);
  return messages.length;
};

lab.setTrackEnabled = (producerId, enabled) => {
  const producer = lab.producers.get(producerId);
  producer.track.enabled = Boolean(enabled);
};

function pickStats(report, type) {
  return [...report.values()].filter((s) => s.type === type);
}

lab.stats = async () => {
  const inbound = [];
  for (const consumer of lab.consumers.values()) {
    if (consumer.closed) continue;
    const s = pickStats(await consumer.getStats(), 'inbound-rtp')[0] || {};
    inbound.push({
      consumerId: consumer.id,
      producerId: consumer.producerId,
      kind: consumer.kind,
      framesDecoded: s.framesDecoded || 0,
      frameWidth: s.frameWidth || 0,
      frameHeight: s.frameHeight || 0,
      packetsReceived: s.packetsReceived || 0,
      packetsLost: s.packetsLost || 0,
      pliCount: s.pliCount || 0,
      firCount: s.firCount || 0,
      nackCount: s.nackCount || 0,
      bytesReceived: s.bytesReceived || 0,
      audioLevel: s.audioLevel || 0,
    });
  }
  const outbound = [];
  for (const producer of lab.producers.values()) {
    if (producer.closed) continue;
    for (const s of pickStats(await producer.getStats(), 'outbound-rtp')) {
      outbound.push({
        producerId: producer.id,
        kind: producer.kind,
        rid: s.rid || null,
        ssrc: s.ssrc,
        packetsSent: s.packetsSent || 0,
        retransmittedPacketsSent: s.retransmittedPacketsSent || 0,
        frameWidth: s.frameWidth || 0,
        frameHeight: s.frameHeight || 0,
        pliCount: s.pliCount || 0,
        firCount: s.firCount || 0,
        nackCount: s.nackCount || 0,
      });
    }
  }
  return { inbound, outbound };
};

lab.mediasoupClient = mediasoupClient;
window.mediasoupClient = mediasoupClient;
window.lab = lab;
window.labReady = true;
