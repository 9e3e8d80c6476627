// The explorer's figures in JupyterLab: one widget for all of an explorer's panels.
//
// Python sends every panel's figure dict in one message (numpy arrays as binary buffers);
// each is drawn with Plotly.react, which diffs it against what is on screen. Panels sit in a
// CSS grid (two per row where there is room, one where not, "wide" ones a row of their own)
// and resize with their cell. `status` non-empty dims the figures under a "computing..." note.
// The same module draws the served Panel app's figures (widgets/_panel.py, through Panel's
// anywidget adapter): there values arrive decoded by Bokeh (dicts as Maps, arrays as typed
// arrays with a shape) and the grid lives in a shadow root, which plotly.js's global styles
// do not reach, so they are copied in.
// plotly.js arrives as the widget's `plotly_js` text and is evaluated once per page, when the
// first view renders (anywidget gives a module 2 s to load: a module holding plotly.js missed
// that on a busy machine and the widget never drew).

const TYPED_ARRAYS = {
  float64: Float64Array,
  float32: Float32Array,
  int32: Int32Array,
  int16: Int16Array,
  int8: Int8Array,
  uint32: Uint32Array,
  uint16: Uint16Array,
  uint8: Uint8Array,
};

function ndarray({ dtype, shape, buffer }) {
  // A copy: a typed array needs an aligned offset, a message's buffer may not give one.
  const view = buffer instanceof ArrayBuffer ? new DataView(buffer) : buffer;
  const bytes = view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength);
  return shaped(new TYPED_ARRAYS[dtype](bytes), shape);
}

function shaped(flat, shape) {
  if (shape.length <= 1) {
    return flat;
  }
  const rows = (start, dims) => {
    const size = dims.slice(1).reduce((a, b) => a * b, 1);
    const out = [];
    for (let i = 0; i < dims[0]; i++) {
      const at = start + i * size;
      out.push(dims.length === 2 ? Array.from(flat.subarray(at, at + size)) : rows(at, dims.slice(1)));
    }
    return out;
  };
  return rows(0, shape);
}

// Bokeh decodes a dict as a Map; ipywidgets as an object.
function plain(value) {
  return value instanceof Map ? Object.fromEntries(value) : value;
}

function decode(value) {
  if (value instanceof Map) {
    return decode(plain(value));
  }
  if (Array.isArray(value)) {
    return value.map(decode);
  }
  if (value !== null && typeof value === "object") {
    if (value.__ndarray__) {
      return ndarray(value);
    }
    const out = {};
    for (const [key, item] of Object.entries(value)) {
      out[key] = decode(item);
    }
    return out;
  }
  return value;
}

const CONFIG = { responsive: true, displaylogo: false };

function loadPlotly(model) {
  if (!globalThis.__workbenchPlotly) {
    const module = { exports: {} };
    // The UMD bundle assigns module.exports when given a CommonJS module.
    new Function("module", "exports", "define", model.get("plotly_js"))(
      module,
      module.exports,
      undefined,
    );
    globalThis.__workbenchPlotly = module.exports;
  }
  return globalThis.__workbenchPlotly;
}

// plotly.js keeps its styles in <style id="plotly.js-style-..."> sheets of the document head,
// filled rule by rule; a grid in a shadow root gets a copy of their rules after each draw
// (plotly adds rules as it first meets a feature: the modebar, a legend).
function shareStyles(el) {
  const root = el.getRootNode();
  if (!(root instanceof ShadowRoot)) {
    return;
  }
  for (const sheet of document.head.querySelectorAll("style[id^='plotly.js-style']")) {
    const id = `wb-copy-${sheet.id}`;
    const rules = Array.from(sheet.sheet ? sheet.sheet.cssRules : [], (r) => r.cssText);
    let copy = root.getElementById(id);
    if (copy && copy.dataset.rules === String(rules.length)) {
      continue;
    }
    if (!copy) {
      copy = document.createElement("style");
      copy.id = id;
      root.appendChild(copy);
    }
    copy.textContent = rules.join("\n");
    copy.dataset.rules = String(rules.length);
  }
}

function render({ model, el }) {
  const Plotly = loadPlotly(model);
  el.classList.add("wb-plot-grid");
  const note = document.createElement("div");
  note.className = "wb-busy-note";
  el.appendChild(note);
  const plots = new Map();
  for (const panel of model.get("panels")) {
    const cell = document.createElement("div");
    cell.className = panel.wide ? "wb-cell wb-wide" : "wb-cell";
    const plot = document.createElement("div");
    plot.className = "wb-plot";
    plot.dataset.panel = panel.name;
    plot.style.height = `${panel.height}px`;
    cell.appendChild(plot);
    el.appendChild(cell);
    plots.set(panel.name, plot);
  }

  let drawn = false;
  const revisions = new Map(); // panel -> the revision on screen
  const draw = () => {
    const figures = plain(model.get("figures"));
    for (const [name, plot] of plots) {
      const figure = plain(figures[name]);
      if (figure === undefined || (drawn && revisions.get(name) === figure.revision)) {
        continue; // unchanged: redrawing would cost a full plotly.js recompute for nothing
      }
      revisions.set(name, figure.revision);
      // The cell sets the width; uirevision keeps a reader's zoom across updates.
      const { data, layout } = decode(figure);
      const { width, ...sized } = layout;
      Plotly.react(plot, data, { uirevision: name, ...sized, autosize: true }, CONFIG);
    }
    drawn = true;
    shareStyles(el);
  };
  const showStatus = () => {
    const status = model.get("status");
    note.textContent = status;
    el.classList.toggle("wb-busy", status !== "");
  };

  // Drawn once the grid has a width (a widget is rendered before it is attached); after that
  // every change of a cell's size resizes its figure.
  const resized = new ResizeObserver(() => {
    if (el.clientWidth === 0) {
      return;
    }
    if (!drawn) {
      draw();
      return;
    }
    for (const plot of plots.values()) {
      Plotly.Plots.resize(plot);
    }
  });
  resized.observe(el);
  const redraw = () => {
    if (el.clientWidth > 0) {
      draw();
    } else {
      drawn = false;
    }
  };
  model.on("change:figures", redraw);
  model.on("change:status", showStatus);
  showStatus();
  return () => {
    resized.disconnect();
    model.off("change:figures", redraw);
    model.off("change:status", showStatus);
    for (const plot of plots.values()) {
      Plotly.purge(plot);
    }
  };
}

export default { render };
