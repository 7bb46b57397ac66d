// Zoom and pan of an image in a viewport, shared by the inspector and the annotation pages:
// the stage (image + overlay) is moved by a CSS transform; `toImage` maps the pointer back to
// image pixels. Each page keeps its own pointer handling and calls beginPan/panTo for drags.

const MIN_SCALE = 0.1;
const MAX_SCALE = 40;

export class Viewer {
  // imageSize() returns {width, height} of the image on the stage, or null when there is none
  // (then fit and the wheel do nothing). fitFraction leaves a margin around a fitted image;
  // decimals is how finely toImage rounds.
  constructor({ viewport, stage, zoomLevel, imageSize, fitFraction = 1, wheelFactor = 1.2, decimals = 0 }) {
    this.viewport = viewport;
    this.stage = stage;
    this.zoomLevel = zoomLevel;
    this.imageSize = imageSize;
    this.fitFraction = fitFraction;
    this.decimals = decimals;
    this.view = { scale: 1, x: 0, y: 0 };
    this.panOrigin = null;
    viewport.addEventListener(
      "wheel",
      (event) => {
        if (!this.imageSize()) return;
        event.preventDefault();
        this.zoomAt(event.deltaY < 0 ? wheelFactor : 1 / wheelFactor, event.clientX, event.clientY);
      },
      { passive: false },
    );
  }

  get scale() {
    return this.view.scale;
  }

  apply() {
    const { scale, x, y } = this.view;
    this.stage.style.transform = `translate(${x}px, ${y}px) scale(${scale})`;
    this.zoomLevel.textContent = `${Math.round(scale * 100)}%`;
  }

  fit() {
    const size = this.imageSize();
    if (!size) return;
    const rect = this.viewport.getBoundingClientRect();
    const scale = Math.min(rect.width / size.width, rect.height / size.height) * this.fitFraction;
    this.view = {
      scale,
      x: (rect.width - size.width * scale) / 2,
      y: (rect.height - size.height * scale) / 2,
    };
    this.apply();
  }

  // Zooms by `factor`, keeping the point under (clientX, clientY) still; the viewport's centre
  // when no point is given.
  zoomAt(factor, clientX, clientY) {
    const rect = this.viewport.getBoundingClientRect();
    const px = (clientX ?? rect.left + rect.width / 2) - rect.left;
    const py = (clientY ?? rect.top + rect.height / 2) - rect.top;
    const { scale, x, y } = this.view;
    const next = Math.max(MIN_SCALE, Math.min(MAX_SCALE, scale * factor));
    this.view = { scale: next, x: px - ((px - x) * next) / scale, y: py - ((py - y) * next) / scale };
    this.apply();
  }

  beginPan(event) {
    this.panOrigin = { x: event.clientX, y: event.clientY, view: { ...this.view } };
  }

  panTo(event) {
    const origin = this.panOrigin;
    if (!origin) return;
    this.view = {
      scale: origin.view.scale,
      x: origin.view.x + event.clientX - origin.x,
      y: origin.view.y + event.clientY - origin.y,
    };
    this.apply();
  }

  // The pointer's position in image pixels, inside the image and rounded to `decimals`.
  toImage(event) {
    const rect = this.viewport.getBoundingClientRect();
    const { width, height } = this.imageSize();
    const { scale, x, y } = this.view;
    const step = 10 ** this.decimals;
    const clamp = (value, max) => Math.max(0, Math.min(max, Math.round(value * step) / step));
    return [
      clamp((event.clientX - rect.left - x) / scale, width),
      clamp((event.clientY - rect.top - y) / scale, height),
    ];
  }

  // The zoom shortcuts both pages share, for their key maps and toolbar buttons.
  zoomActions() {
    return {
      "zoom-in": () => this.zoomAt(1.25),
      "zoom-out": () => this.zoomAt(0.8),
      fit: () => this.fit(),
    };
  }

  zoomKeys() {
    const { "zoom-in": zoomIn, "zoom-out": zoomOut, fit } = this.zoomActions();
    return { "+": zoomIn, "=": zoomIn, "-": zoomOut, 0: fit };
  }
}
