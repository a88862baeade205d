// The softphone's microphone and speaker: one AudioContext and one AudioWorklet node that both
// records the microphone and plays the agent, at the same rate (the browser protocol sends the
// agent's audio back at the microphone's rate, so the page never resamples).

/** Rates the browser channel takes (`SAMPLE_RATES` in bridges/browser.py). */
export const SAMPLE_RATES = [8000, 16000, 24000, 44100, 48000];
const FALLBACK_RATE = 48000;

export class PhoneAudio {
  /**
   * Open the microphone (the browser asks the user) and the audio thread.
   * @param {(pcm: ArrayBuffer) => void} onFrame called with 20 ms of PCM16 microphone audio
   * @param {(name: string) => void} onMark called when the audio before a mark has played
   */
  static async open(onFrame, onMark) {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    let context = new AudioContext();
    let source;
    try {
      if (!SAMPLE_RATES.includes(context.sampleRate)) {
        // Chromium resamples the microphone into a context of any rate; Firefox cannot (it then
        // throws on createMediaStreamSource, and the error names the rate).
        await context.close();
        context = new AudioContext({ sampleRate: FALLBACK_RATE });
      }
      source = context.createMediaStreamSource(stream);
      await context.audioWorklet.addModule(new URL("./phone-worklet.js", import.meta.url));
    } catch (error) {
      stream.getTracks().forEach((track) => track.stop());
      await context.close();
      throw new Error(`audio at ${context.sampleRate} Hz is not usable here: ${error.message}`);
    }
    const node = new AudioWorkletNode(context, "phone-processor", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      channelCount: 1,
      channelCountMode: "explicit",
    });
    node.port.onmessage = (event) => {
      const message = event.data;
      if (message.type === "audio") onFrame(message.data);
      else if (message.type === "mark") onMark(message.name);
    };
    source.connect(node);
    node.connect(context.destination);
    await context.resume();
    return new PhoneAudio(context, stream, node);
  }

  constructor(context, stream, node) {
    this.context = context;
    this.stream = stream;
    this.node = node;
  }

  get sampleRate() {
    return this.context.sampleRate;
  }

  /** Queue agent audio (PCM16 at `sampleRate`) to play after what is queued. */
  play(pcm) {
    this.node.port.postMessage({ type: "audio", data: pcm }, [pcm]);
  }

  /** Queue a mark: `onMark(name)` runs once the audio queued before it has played. */
  mark(name) {
    this.node.port.postMessage({ type: "mark", name });
  }

  /** Drop the queued audio (barge-in); pending marks are echoed at once. */
  clear() {
    this.node.port.postMessage({ type: "clear" });
  }

  async close() {
    this.node.port.postMessage({ type: "stop" });
    this.stream.getTracks().forEach((track) => track.stop());
    this.node.disconnect();
    await this.context.close();
  }
}
