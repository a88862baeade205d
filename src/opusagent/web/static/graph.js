// An agent's graph, drawn by the server (Graphviz SVG), inlined so its states can be lit up.
//
// Graphviz names each state's node by a <title> holding the state's name; once inlined, each
// node gets the id `state-<name>` and the class `state`, and `show` marks the current state
// (`current`) and the states already visited (`visited`). A wide graph is drawn at a legible
// size and scrolls, following the current state.

import { get } from "./api.js";

const SCALE = 0.75; // CSS pixels per Graphviz point: 14 pt labels come out at 10.5 px

export class AgentGraph {
  constructor(container) {
    this.container = container;
  }

  /** Draw `agent`'s graph; resolves false (with a note in place of the graph) when it cannot. */
  async load(agent) {
    this.container.replaceChildren();
    try {
      const text = await (await get(`/agents/${encodeURIComponent(agent)}/graph.svg`)).text();
      const svg = new DOMParser().parseFromString(text, "image/svg+xml").documentElement;
      if (svg.nodeName !== "svg") throw new Error("the server's graph is not SVG");
      svg.removeAttribute("width");
      svg.removeAttribute("height");
      svg.style.width = `${svg.viewBox.baseVal.width * SCALE}px`;
      for (const node of svg.querySelectorAll("g.node")) {
        const name = node.querySelector("title")?.textContent ?? "";
        node.id = `state-${name}`;
        node.classList.add("state");
        node.dataset.state = name;
      }
      this.container.append(document.importNode(svg, true));
      return true;
    } catch (error) {
      const note = document.createElement("p");
      note.className = "note";
      note.textContent = `No graph: ${error.message}`;
      this.container.append(note);
      return false;
    }
  }

  /** Light up `current` and the states of `path` (those entered before). */
  show(current, path = []) {
    for (const node of this.container.querySelectorAll("g.state")) {
      node.classList.remove("current", "visited");
    }
    for (const name of path) this.node(name)?.classList.add("visited");
    const node = this.node(current);
    if (!node) return;
    node.classList.add("current");
    const box = node.getBoundingClientRect();
    const view = this.container.getBoundingClientRect();
    this.container.scrollBy({ left: box.left + box.width / 2 - (view.left + view.width / 2) });
  }

  node(name) {
    return name ? this.container.ownerDocument.getElementById(`state-${name}`) : null;
  }
}
