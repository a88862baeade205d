// The softphone's audio thread: microphone to PCM16 frames, agent PCM16 to the speakers.
//
// Capture: the first input (mono) is converted to 16-bit samples and posted to the page in
// frames of 20 ms at the AudioContext's rate, which is the rate the call was started with.
// Playback: the page posts agent audio and marks in the order the server sent them; audio is
// played back to back, and a mark is posted back once all audio queued before it has played
// (or at once when `clear` drops the queue), as the browser protocol asks.

const FRAME_SECONDS = 0.02;

class PhoneProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = new Int16Array(Math.round(sampleRate * FRAME_SECONDS));
    this.filled = 0;
    this.queue = []; // {samples: Int16Array, offset: number} or {mark: string}
    this.running = true;
    this.port.onmessage = (event) => this.receive(event.data);
  }

  receive(message) {
    switch (message.type) {
      case "audio":
        this.queue.push({ samples: new Int16Array(message.data), offset: 0 });
        break;
      case "mark":
        this.queue.push({ mark: message.name });
        this.echoPlayedMarks();
        break;
      case "clear":
        for (const item of this.queue) {
          if ("mark" in item) this.port.postMessage({ type: "mark", name: item.mark });
        }
        this.queue = [];
        break;
      case "stop":
        this.running = false;
        break;
    }
  }

  echoPlayedMarks() {
    while (this.queue.length && "mark" in this.queue[0]) {
      this.port.postMessage({ type: "mark", name: this.queue.shift().mark });
    }
  }

  capture(input) {
    const frame = this.frame;
    for (let i = 0; i < input.length; i++) {
      const s = Math.max(-1, Math.min(1, input[i]));
      frame[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.filled === frame.length) {
        const full = frame.slice(0);
        this.port.postMessage({ type: "audio", data: full.buffer }, [full.buffer]);
        this.filled = 0;
      }
    }
  }

  play(output) {
    let written = 0;
    while (written < output.length) {
      this.echoPlayedMarks();
      const head = this.queue[0];
      if (!head) break;
      const n = Math.min(output.length - written, head.samples.length - head.offset);
      for (let i = 0; i < n; i++) output[written + i] = head.samples[head.offset + i] / 0x8000;
      written += n;
      head.offset += n;
      if (head.offset === head.samples.length) this.queue.shift();
    }
    output.fill(0, written);
    this.echoPlayedMarks();
  }

  process(inputs, outputs) {
    const input = inputs[0] && inputs[0][0];
    if (input) this.capture(input);
    const output = outputs[0] && outputs[0][0];
    if (output) this.play(output);
    return this.running;
  }
}

registerProcessor("phone-processor", PhoneProcessor);
