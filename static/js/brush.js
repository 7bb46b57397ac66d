// Brush and eraser of the annotation page (label.js): mask regions painted in image pixels,
// whatever the zoom. The layer canvas is as large as the image in image pixels and sits on the
// stage under the SVG overlay, so viewer.js's transform scales it with the image and a pointer
// position from viewer.toImage is a pixel of it. While a stroke is in progress the region it
// changes is a full-image bitmap; when it ends, the bitmap shrinks to the painted pixels' box
// and becomes COCO RLE: counts column by column, starting with the zeros' run, in COCO's
// compressed string form (labeling/masks.py reads and checks it on the server).
import { svgElement } from "./dom.js";

export const MIN_SIZE = 1;
export const MAX_SIZE = 100;
const SIZE_KEY = "label-brush-size";
const FALLBACK_COLOUR = "#ffcc00";
const SELECTED_COLOUR = "#00e5ff";
const LAYER_ALPHA = 0.55;

// --- COCO RLE (pycocotools' rleToString / rleFrString) ---
export function countsToString(counts) {
  let text = "";
  for (let i = 0; i < counts.length; i++) {
    let value = counts[i] - (i > 2 ? counts[i - 2] : 0);
    for (let more = true; more; ) {
      let group = value & 0x1f;
      value >>= 5;
      more = group & 0x10 ? value !== -1 : value !== 0;
      if (more) group |= 0x20;
      text += String.fromCharCode(group + 48);
    }
  }
  return text;
}

export function countsFromString(text) {
  const counts = [];
  let position = 0;
  while (position < text.length) {
    let value = 0;
    let shift = 0;
    for (let more = true; more; ) {
      const group = text.charCodeAt(position) - 48;
      value |= (group & 0x1f) << (5 * shift);
      more = group & 0x20;
      position++;
      shift++;
      if (!more && group & 0x10) value |= -1 << (5 * shift);
    }
    if (counts.length > 2) value += counts[counts.length - 2];
    counts.push(value);
  }
  return counts;
}

// A region's mask as a row-major bitmap of its box (1 = painted).
export function rleDecode({ size: [height, width], counts }) {
  const bits = new Uint8Array(height * width);
  const runs = typeof counts === "string" ? countsFromString(counts) : counts;
  let position = 0;
  runs.forEach((run, index) => {
    if (index % 2) {
      for (let i = position; i < position + run; i++) bits[(i % height) * width + Math.floor(i / height)] = 1;
    }
    position += run;
  });
  return bits;
}

export function rleEncode(bits, width, height) {
  const counts = [];
  let current = 0;
  let run = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const value = bits[y * width + x];
      if (value !== current) {
        counts.push(run);
        run = 0;
        current = value;
      }
      run++;
    }
  }
  counts.push(run);
  return { size: [height, width], counts: countsToString(counts) };
}

// The CSS colour as [r, g, b], whatever its notation (the canvas normalises it).
const probe = document.createElement("canvas").getContext("2d");
function rgb(colour) {
  probe.fillStyle = "#000";
  probe.fillStyle = colour || FALLBACK_COLOUR;
  const hex = probe.fillStyle.startsWith("#") ? probe.fillStyle : FALLBACK_COLOUR;
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

// Paints `bits` (row-major, `width` wide) into `canvas` over the rectangle (x0, y0)-(x1, y1)
// of both, painted pixels in the colour and the rest cleared.
function paintRect(canvas, bits, width, colour, x0, y0, x1, y1) {
  if (x1 <= x0 || y1 <= y0) return;
  const [r, g, b] = rgb(colour);
  const data = new ImageData(x1 - x0, y1 - y0);
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      if (!bits[y * width + x]) continue;
      const i = ((y - y0) * (x1 - x0) + (x - x0)) * 4;
      data.data[i] = r;
      data.data[i + 1] = g;
      data.data[i + 2] = b;
      data.data[i + 3] = 255;
    }
  }
  canvas.getContext("2d").putImageData(data, x0, y0);
}

function canvasOf(width, height) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  return canvas;
}

export class Brush {
  // canvas: the layer on the stage; slider / sizeLabel: the size control and its readout;
  // imageSize() -> {width, height}; colourOf(defectType) -> a CSS colour or undefined.
  constructor({ canvas, slider, sizeLabel, imageSize, colourOf }) {
    this.canvas = canvas;
    this.slider = slider;
    this.sizeLabel = sizeLabel;
    this.imageSize = imageSize;
    this.colourOf = colourOf;
    this.cache = new WeakMap(); // region -> {key, canvas} of its box, drawn
    this.edits = []; // the stroke in progress: [{region, bits, canvas, created}]
    this.cursor = null; // the pointer in image pixels, for the size circle
    this.last = null;
    this.mode = "brush";
    this.size = Number(localStorage.getItem(SIZE_KEY)) || Number(slider?.value) || 8;
    slider?.addEventListener("input", () => this.setSize(Number(slider.value)));
    this.setSize(this.size);
  }

  get active() {
    return this.edits.length > 0;
  }

  setSize(size) {
    this.size = Math.max(MIN_SIZE, Math.min(MAX_SIZE, Math.round(size) || MIN_SIZE));
    localStorage.setItem(SIZE_KEY, String(this.size));
    if (this.slider) this.slider.value = String(this.size);
    if (this.sizeLabel) this.sizeLabel.textContent = `${this.size} px`;
  }

  // [ and ]: about a fifth smaller or larger, at least a pixel.
  resize(direction) {
    this.setSize(this.size + direction * Math.max(1, Math.round(this.size / 5)));
  }

  colour(region, selected) {
    return selected ? SELECTED_COLOUR : this.colourOf(region.defect_type) || FALLBACK_COLOUR;
  }

  // A region as a full-image bitmap and canvas, for a stroke to change.
  edit(region, selected, created = false) {
    const { width, height } = this.imageSize();
    const bits = new Uint8Array(width * height);
    if (region.mask) {
      const [x0, y0, x1, y1] = region.box;
      const own = rleDecode(region.mask);
      const boxWidth = x1 - x0;
      for (let y = y0; y < Math.min(y1, height); y++) {
        for (let x = x0; x < Math.min(x1, width); x++) bits[y * width + x] = own[(y - y0) * boxWidth + (x - x0)];
      }
    }
    const canvas = canvasOf(width, height);
    paintRect(canvas, bits, width, this.colour(region, selected), 0, 0, width, height);
    return { region, bits, canvas, created, colour: this.colour(region, selected) };
  }

  // A stroke starts: the brush paints into the selected mask region (or a new one), the
  // eraser clears the selected mask region (or every mask region when none is selected).
  begin(mode, point, regions, selected) {
    this.mode = mode;
    const masks = regions.filter((region) => region.shape === "mask");
    if (mode === "brush") {
      const target = selected?.shape === "mask" ? selected : null;
      const region = target || { shape: "mask" }; // its type: label.js's addRegion gives it
      this.edits = [this.edit(region, true, !target)];
    } else {
      const targets = selected?.shape === "mask" ? [selected] : masks;
      this.edits = targets.map((region) => this.edit(region, region === selected));
    }
    this.last = null;
    this.move(point);
  }

  move(point) {
    if (!this.active) return;
    const from = this.last || point;
    const radius = Math.max(this.size / 2, 0.71); // at least the pixel under the pointer
    const distance = Math.hypot(point[0] - from[0], point[1] - from[1]);
    const steps = Math.max(1, Math.ceil(distance / Math.max(0.5, radius / 2)));
    for (let step = this.last ? 1 : 0; step <= steps; step++) {
      const t = step / steps;
      this.stamp(from[0] + (point[0] - from[0]) * t, from[1] + (point[1] - from[1]) * t, radius);
    }
    this.last = point;
  }

  // A disc of the pixels whose centres lie within `radius` of (cx, cy).
  stamp(cx, cy, radius) {
    const { width, height } = this.imageSize();
    const x0 = Math.max(0, Math.floor(cx - radius));
    const y0 = Math.max(0, Math.floor(cy - radius));
    const x1 = Math.min(width, Math.ceil(cx + radius) + 1);
    const y1 = Math.min(height, Math.ceil(cy + radius) + 1);
    const value = this.mode === "brush" ? 1 : 0;
    const r2 = radius * radius;
    for (const edit of this.edits) {
      for (let y = y0; y < y1; y++) {
        for (let x = x0; x < x1; x++) {
          const dx = x + 0.5 - cx;
          const dy = y + 0.5 - cy;
          if (dx * dx + dy * dy <= r2) edit.bits[y * width + x] = value;
        }
      }
      paintRect(edit.canvas, edit.bits, width, edit.colour, x0, y0, x1, y1);
    }
  }

  // The stroke ends: each changed region gets its painted pixels' box and RLE. Returns
  // {created: a new mask region or null, removed: regions erased away, edited: any change}.
  end() {
    const { width, height } = this.imageSize();
    const result = { created: null, removed: [], edited: false };
    for (const { region, bits, created } of this.edits) {
      let x0 = width;
      let y0 = height;
      let x1 = 0;
      let y1 = 0;
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          if (!bits[y * width + x]) continue;
          if (x < x0) x0 = x;
          if (x >= x1) x1 = x + 1;
          if (y < y0) y0 = y;
          if (y >= y1) y1 = y + 1;
        }
      }
      if (x1 <= x0) {
        if (!created) result.removed.push(region);
        continue;
      }
      const crop = new Uint8Array((x1 - x0) * (y1 - y0));
      for (let y = y0; y < y1; y++) crop.set(bits.subarray(y * width + x0, y * width + x1), (y - y0) * (x1 - x0));
      const mask = rleEncode(crop, x1 - x0, y1 - y0);
      if (!created && region.mask?.counts === mask.counts && String(region.box) === String([x0, y0, x1, y1])) continue;
      region.box = [x0, y0, x1, y1];
      region.mask = mask;
      result.edited = true;
      if (created) result.created = region;
    }
    this.edits = [];
    this.last = null;
    return result;
  }

  cancel() {
    this.edits = [];
    this.last = null;
  }

  // The layer: every mask region (the ones a stroke is changing from their bitmaps).
  draw(regions, selectedIndex) {
    const { width, height } = this.imageSize();
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
      // Through the CSSOM: the Content-Security-Policy refuses style attributes.
      this.canvas.style.width = `${width}px`;
      this.canvas.style.height = `${height}px`;
    }
    const context = this.canvas.getContext("2d");
    context.clearRect(0, 0, width, height);
    context.globalAlpha = LAYER_ALPHA;
    const editing = new Map(this.edits.map((edit) => [edit.region, edit]));
    regions.forEach((region, index) => {
      if (region.shape !== "mask" || !region.mask) return;
      if (editing.has(region)) return;
      context.drawImage(this.regionCanvas(region, index === selectedIndex), region.box[0], region.box[1]);
    });
    for (const edit of this.edits) context.drawImage(edit.canvas, 0, 0);
    context.globalAlpha = 1;
  }

  regionCanvas(region, selected) {
    const colour = this.colour(region, selected);
    const key = `${region.box}|${region.mask.counts}|${colour}`;
    const cached = this.cache.get(region);
    if (cached?.key === key) return cached.canvas;
    const [x0, y0, x1, y1] = region.box;
    const canvas = canvasOf(x1 - x0, y1 - y0);
    paintRect(canvas, rleDecode(region.mask), x1 - x0, colour, 0, 0, x1 - x0, y1 - y0);
    this.cache.set(region, { key, canvas });
    return canvas;
  }

  // The brush's size around the pointer, in image pixels (so it grows as one zooms in).
  drawCursor(svg, tool) {
    if (!this.cursor || (tool !== "brush" && tool !== "eraser")) return;
    svgElement("circle", { class: `brush-cursor ${tool}`, cx: this.cursor[0], cy: this.cursor[1], r: Math.max(this.size / 2, 0.5) }, svg);
  }
}
