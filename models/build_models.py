"""Build a2v's built-in lip-sync model: two small, hand-designed ONNX graphs (nothing is trained).

    python -m models.build_models                   # writes the shipped a2v-mouth-v3.onnx and a2v-warp-v1.onnx
    python -m models.build_models --reference /tmp  # also the old a2v-articulator-v1.onnx and a2v-mouth-v2.onnx there

Only the models that ship are committed; the old ones are rebuilt from this recipe when a comparison needs them.

The build is deterministic: the same source always gives byte-identical files (tests/test_model.py checks
that the committed files match this script, and builds the old ones it compares against). See MODEL_CARD.md for
the contract and measured figures.

1. ``a2v-articulator-v1.onnx``: mel [B,1,80,16] -> articulation [B,4] = open, spread, round, press (0..1).
   A fixed signal-processing network on the Wav2Lip log-mel window of level-normalized 16 kHz speech:
   band energies (MatMul with fixed mel-band weights, in the power domain), a temporal kernel over the
   window's 16 columns (centre = column 8), then thresholds (Clip) that map band levels to mouth shape.
2. ``a2v-mouth-v2.onnx``: articulation [B,4] + style [B,12] + offset [B,2] -> premultiplied rgb [B,3,96,128]
   and alpha [B,1,96,128] of a cartoon mouth, drawn with signed distances and analytic antialiasing.
   ``a2v-mouth-v3.onnx`` (the one in use) is the same graph with a ``window`` input: it draws only that
   rectangle of the patch (exactly v2's pixels there), so a pose pays for the pixels its mouths can reach.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from a2v_cli.engine.features import MAX_ABS_VALUE, N_MELS, WINDOW_FRAMES, mel_center_hz

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


ARTICULATOR_FILE = "a2v-articulator-v1.onnx"
MOUTH_FILE = "a2v-mouth-v2.onnx"
MOUTH_WINDOW_FILE = "a2v-mouth-v3.onnx"
WARP_FILE = "a2v-warp-v1.onnx"
OPSET = 17
IR_VERSION = 8
PRODUCER = "a2v models/build_models.py"

PATCH_H, PATCH_W = 96, 128
ARTICULATION = ("open", "spread", "round", "press")
STYLE = (
    "lip_r", "lip_g", "lip_b", "inner_r", "inner_g", "inner_b", "teeth_r", "teeth_g", "teeth_b",
    "half_width", "lip_thickness", "max_open",
)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# A tiny ONNX graph builder: named ops, constants as initializers, deterministic names
# ----------------------------------------------------------------------------------------------------------------------


class GraphBuilder:
    """Collects nodes and initializers; every value gets a readable, unique, deterministic name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._used: set[str] = set()
        self._scope: list[str] = []

    def _unique(self, base: str) -> str:
        base = "/".join([*self._scope, base])
        name, k = base, 1
        while name in self._used:
            k += 1
            name = f"{base}_{k}"
        self._used.add(name)
        return name

    @contextmanager
    def scope(self, name: str) -> Iterator[None]:
        """Prefix the names of the values made inside (``open/level``), for a readable graph."""
        self._scope.append(name)
        try:
            yield
        finally:
            self._scope.pop()

    def input(self, name: str, shape: Sequence[int | str]) -> str:
        self._used.add(name)
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        return name

    def output(self, value: str, name: str, shape: Sequence[int | str]) -> None:
        self.nodes.append(helper.make_node("Identity", [value], [name], name=name))
        self._used.add(name)
        self.outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))

    def const(self, value: float | Sequence | np.ndarray, name: str = "const", dtype: type = np.float32) -> str:
        arr = np.asarray(value, dtype=dtype)
        full = self._unique(name)
        self.initializers.append(numpy_helper.from_array(arr, full))
        return full

    def ints(self, value: Sequence[int], name: str = "shape") -> str:
        return self.const(value, name, np.int64)

    def op(self, op_type: str, *inputs: str, name: str | None = None, **attrs: object) -> str:
        """Add one single-output node; returns the output's name (also the node's name)."""
        out = self._unique(name or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def split(self, x: str, n: int, axis: int, name: str) -> list[str]:
        """Split ``x`` into ``n`` pieces of size 1 along ``axis``."""
        sizes = self.ints([1] * n, name + "_sizes")
        base = self._unique(name)
        outs = [f"{base}_{i}" for i in range(n)]
        self._used.update(outs)
        self.nodes.append(helper.make_node("Split", [x, sizes], outs, name=base, axis=axis))
        return outs

    # small conveniences -------------------------------------------------------------------------------------------
    def add(self, a: str, b: str, name: str | None = None) -> str:
        return self.op("Add", a, b, name=name)

    def sub(self, a: str, b: str, name: str | None = None) -> str:
        return self.op("Sub", a, b, name=name)

    def mul(self, a: str, b: str, name: str | None = None) -> str:
        return self.op("Mul", a, b, name=name)

    def clip01(self, x: str, name: str | None = None) -> str:
        return self.op("Clip", x, self.const(0.0, "zero"), self.const(1.0, "one"), name=name)

    def affine(self, x: str, scale: float, shift: float, name: str | None = None) -> str:
        """x * scale + shift."""
        y = self.mul(x, self.const(scale, (name or "affine") + "_scale"))
        return self.add(y, self.const(shift, (name or "affine") + "_shift"), name=name)

    def ramp(self, x: str, lo: float, hi: float, name: str | None = None) -> str:
        """0 at x <= lo, 1 at x >= hi, linear between: Clip((x - lo) / (hi - lo), 0, 1). Exactly 0 below lo."""
        return self.clip01(self.affine(x, 1.0 / (hi - lo), -lo / (hi - lo), (name or "ramp") + "_lin"), name=name)

    def model(self, doc: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name=PRODUCER,
            producer_version="1",
            model_version=1,
            doc_string=doc,
        )
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model, full_check=True)
        return model


# ----------------------------------------------------------------------------------------------------------------------
# 1. Articulator: mel window -> open, spread, round, press
# ----------------------------------------------------------------------------------------------------------------------

# One mel unit is 12.5 dB (features.py maps -100..0 dB to -4..4). Power ratio of a mel difference: exp(C * d).
MEL_UNIT_DB = 100.0 / (2 * MAX_ABS_VALUE)
POWER_C = MEL_UNIT_DB * math.log(10.0) / 10.0

# Bands (Hz) whose power-mean log level (in mel units) the network reads. Mel bands are picked by centre frequency.
BANDS: dict[str, tuple[float, float]] = {
    "low": (60.0, 400.0),  # F0 / voice bar / nasal murmur
    "f1lo": (250.0, 550.0),  # F1 of close vowels (EE, OO)
    "f1": (550.0, 1000.0),  # F1 of open vowels (AA, AE, AO): jaw opening (edges: params f1_lo_hz, f1_hi_hz)
    "mid": (550.0, 3500.0),  # everything a nasal murmur / voice bar lacks
    "back": (600.0, 1700.0),  # F2 of back and central vowels
    "front": (1700.0, 3200.0),  # F2/F3 of front vowels (EE, IH, EH)
    "lower": (200.0, 1150.0),  # rounding lowers every formant: energy stays below ~1.1 kHz
    "upper": (1150.0, 3500.0),
    "hf": (3700.0, 7600.0),  # sibilant / fricative noise
    "all": (100.0, 7600.0),  # overall level: silence gate and closure dip
}

# Constants of the articulator, in mel units (12.5 dB) relative to the normalized speech level
# (95th percentile of 20 ms RMS at -20 dBFS). Chosen by hand and refined on the training sentences of
# models/eval_articulator.py (models/tune_articulator.py); the held-out sentences and voices are reported apart.
ARTICULATOR_PARAMS: dict[str, float] = {
    "f1_lo_hz": 450.0,  # F1 band: above the F1 of close vowels (EE, OO: 250-450 Hz) ...
    "f1_hi_hz": 925.0,  # ... up to the F1 of open vowels (AA: 700-1000 Hz)
    "smooth_sigma": 1.5,  # temporal Gaussian over window columns (1 column = 12.5 ms), centred on column 8
    "centre_sigma": 0.7,  # narrow kernel: "what is happening at the frame centre"
    "level_lo": -2.0,  # F1-band level where opening starts (white noise 35 dB below speech: about -2.8)
    "level_hi": 1.0,  # F1-band level of a loud open vowel
    "height_bias": 0.475,  # vowel height cue at equal F1-band and 250-550 Hz levels ...
    "height_gain": 0.4,  # ... plus this per mel unit of (f1 - f1lo): AA high, EE/OO low
    "fric_lo": -0.9,  # HF level where fricatives start to part the lips (noise floor about -1.8)
    "fric_hi": 0.2,
    "fric_open": 0.1,  # opening given to a loud fricative
    "prom_lo": -1.4,  # prominence: centre level minus the window's loudest column (consonants sit below vowels)
    "prom_hi": -0.55,
    "prom_floor": 0.1,  # share of the vowel opening kept at zero prominence
    "gate_lo": -1.9,  # overall level (min over the centre +-gate_cols columns) below which all is exactly 0 ...
    "gate_hi": -1.5,  # ... (white noise 35 dB below speech reaches -2.1, 30 dB below -1.7)
    "gate_cols": 1,
    "hole_cols": 1,  # closure: the quietest column within +-1 column (12.5 ms) of the centre ...
    "dip_span": 5,  # ... with louder columns within 5 columns (62 ms) on both sides: a stop closure, not a pause
    "dip_lo": 0.5,  # ... this many mel units below the loudest column on the quieter side (ramp to dip_hi)
    "dip_hi": 1.0,
    "murmur_lo": -0.35,  # low band vs the 550-3500 Hz band: nasal murmur / voice bar have little above 500 Hz
    "murmur_hi": -0.1,
    "murmur_level_lo": -2.4,  # and the low band itself clearly above noise
    "murmur_level_hi": -1.6,
    "quiet_lo": 0.6,  # murmur is also well below the window's loudest column (a vowel nearby)
    "quiet_hi": 0.9,
    "press_close": 0.55,  # share of the opening that full press takes away
    "voiced_lo": -2.2,  # voicing (for spread / round): lower-band level
    "voiced_hi": -1.2,
    "spread_lo": -1.0,  # F2 high: front (1.7-3.2 kHz) minus back (0.6-1.7 kHz) band level
    "spread_hi": 0.4,
    "round_lo": 0.4,  # F2 low: lower (0.2-1.15 kHz) minus front band level; fades with spread and opening
    "round_hi": 1.6,
    "round_open_cut": 1.3,  # round fades as the jaw opens (AA is not rounded)
}


def band_weights(bands: dict[str, tuple[float, float]]) -> tuple[np.ndarray, list[str]]:
    """(80, K) mel -> band averaging weights (columns sum to 1) and the band names in column order."""
    fc = mel_center_hz()
    names = list(bands)
    w = np.zeros((N_MELS, len(names)), dtype=np.float64)
    for k, name in enumerate(names):
        lo, hi = bands[name]
        sel = (fc >= lo) & (fc < hi)
        assert sel.any(), name
        w[sel, k] = 1.0
    return (w / w.sum(axis=0, keepdims=True)).astype(np.float32), names


def temporal_kernels(smooth_sigma: float, centre_sigma: float) -> np.ndarray:
    """(16, 2) normalized Gaussians over the window columns, centred on column 8 (the frame's centre time)."""
    cols = np.arange(WINDOW_FRAMES, dtype=np.float64) - WINDOW_FRAMES // 2
    ks = [np.exp(-0.5 * (cols / s) ** 2) for s in (smooth_sigma, centre_sigma)]
    return np.stack([k / k.sum() for k in ks], axis=1).astype(np.float32)


def build_articulator(params: dict[str, float] | None = None) -> onnx.ModelProto:
    p = {**ARTICULATOR_PARAMS, **(params or {})}
    g = GraphBuilder("a2v_articulator_v1")
    mel = g.input("mel", ["B", 1, N_MELS, WINDOW_FRAMES])
    weights, names = band_weights({**BANDS, "f1": (p["f1_lo_hz"], p["f1_hi_hz"])})
    nb = len(names)
    band = {n: i for i, n in enumerate(names)}
    centre = WINDOW_FRAMES // 2

    with g.scope("bands"):
        x = g.op("Clip", mel, g.const(-MAX_ABS_VALUE, "lo"), g.const(MAX_ABS_VALUE, "hi"), name="clip_input")
        x = g.op("Reshape", x, g.ints([-1, N_MELS, WINDOW_FRAMES]), name="b_mel_t")
        x = g.op("Transpose", x, perm=[0, 2, 1], name="b_t_mel")
        power = g.op("Exp", g.mul(x, g.const(POWER_C, "db_to_power")), name="power")
        energy = g.op("MatMul", power, g.const(weights, "band_weights"), name="band_power")  # [B,16,K]
        level = g.mul(g.op("Log", energy, name="log_power"), g.const(1.0 / POWER_C, "power_to_mel"), name="level")
        level = g.op("Transpose", level, perm=[0, 2, 1], name="level_b_k_t")  # [B,K,16]

    with g.scope("time"):
        kernels = temporal_kernels(p["smooth_sigma"], p["centre_sigma"])
        tk = g.op("MatMul", level, g.const(kernels, "kernels"), name="weighted")  # [B,K,2]
        feats = g.op("Reshape", tk, g.ints([-1, 2 * nb]), name="features")  # column 2k: smooth, 2k+1: centre

    def feat(band_name: str, kind: str) -> np.ndarray:
        v = np.zeros(2 * nb, dtype=np.float64)
        v[2 * band[band_name] + (0 if kind == "s" else 1)] = 1.0
        return v

    # Linear read-outs of the band levels, one column each, then ramps (Clip) -> 0..1 cues.
    combos = {
        "level": (feat("f1", "s"), p["level_lo"], p["level_hi"]),
        "height": (feat("f1", "s") - feat("f1lo", "s"), -p["height_bias"] / p["height_gain"],
                   (1.0 - p["height_bias"]) / p["height_gain"]),
        "fric": (feat("hf", "c"), p["fric_lo"], p["fric_hi"]),
        "murmur": (feat("low", "c") - feat("mid", "c"), p["murmur_lo"], p["murmur_hi"]),
        "murmur_level": (feat("low", "c"), p["murmur_level_lo"], p["murmur_level_hi"]),
        "voiced": (feat("lower", "s"), p["voiced_lo"], p["voiced_hi"]),
        "spread": (feat("front", "s") - feat("back", "s"), p["spread_lo"], p["spread_hi"]),
        "round": (feat("lower", "s") - feat("front", "s"), p["round_lo"], p["round_hi"]),
    }  # fmt: skip
    a = np.stack([v / (hi - lo) for v, lo, hi in combos.values()], axis=1).astype(np.float32)
    bias = np.array([-lo / (hi - lo) for _, lo, hi in combos.values()], dtype=np.float32)
    with g.scope("cues"):
        lin = g.add(g.op("MatMul", feats, g.const(a, "readout"), name="readout"), g.const(bias, "readout_bias"))
        cues = g.clip01(lin, name="cues")
        cue = dict(zip(combos, g.split(cues, len(combos), axis=1, name="cue"), strict=True))

    with g.scope("gate"):
        # Hard silence gate: the loudest column near the frame centre must be above the noise floor.
        overall = g.op("Gather", level, g.const(band["all"], "all_band", np.int64), axis=1, name="overall")  # [B,16]

        def colmax(lo: int, hi: int, name: str) -> str:
            cols = g.op("Slice", overall, g.ints([lo], name + "_lo"), g.ints([hi], name + "_hi"), g.ints([1]))
            return g.op("ReduceMax", cols, axes=[1], keepdims=1, name=name)

        k = int(p["gate_cols"])
        loudest = g.op("ReduceMax", overall, axes=[1], keepdims=1, name="loudest")
        near = g.op("Slice", overall, g.ints([centre - k]), g.ints([centre + k + 1]), g.ints([1]), name="near")
        quietest = g.op("ReduceMin", near, axes=[1], keepdims=1, name="near_min")
        gate = g.ramp(quietest, p["gate_lo"], p["gate_hi"], name="gate")

    with g.scope("press"):
        # Closure: the quietest column within +-hole_cols of the centre lies well below the loudest column on
        # EACH side of it, within dip_span columns (silence before a burst, or a voice bar, between two louder sounds).
        h = int(p["hole_cols"])
        span = int(p["dip_span"])
        before = colmax(max(centre - span, 0), centre - h, "before_max")
        after = colmax(centre + h + 1, min(centre + span + 1, WINDOW_FRAMES), "after_max")
        sides = g.op("Min", before, after, name="sides")
        hole = g.op("Slice", overall, g.ints([centre - h]), g.ints([centre + h + 1]), g.ints([1]), name="hole")
        hole = g.op("ReduceMin", hole, axes=[1], keepdims=1, name="hole_min")
        dip = g.ramp(g.sub(sides, hole, name="depth"), p["dip_lo"], p["dip_hi"], name="dip")
        centre_all = g.op("Slice", feats, g.ints([2 * band["all"] + 1]), g.ints([2 * band["all"] + 2]), g.ints([1]))
        quiet = g.ramp(g.sub(loudest, centre_all), p["quiet_lo"], p["quiet_hi"], name="quiet")
        murmur = g.mul(g.mul(g.mul(cue["murmur"], cue["murmur_level"]), quiet), gate, name="murmur")
        press = g.op("Max", dip, murmur, name="press")

    with g.scope("open"):
        prom = g.ramp(g.sub(centre_all, loudest), p["prom_lo"], p["prom_hi"], name="prominence")
        prom = g.affine(prom, 1.0 - p["prom_floor"], p["prom_floor"], name="prominence_weight")
        vowel = g.mul(g.mul(cue["level"], cue["height"]), prom, name="vowel")
        raw = g.add(vowel, g.mul(cue["fric"], g.const(p["fric_open"], "fric_open")), name="raw")
        keep = g.affine(press, -p["press_close"], 1.0, name="not_pressed")
        open_ = g.mul(g.clip01(g.mul(raw, keep), name="clipped"), gate, name="open")

    with g.scope("shape"):
        free = g.mul(g.mul(cue["voiced"], gate), g.affine(press, -1.0, 1.0, name="not_pressed"), name="free")
        spread = g.mul(cue["spread"], free, name="spread")
        not_open = g.clip01(g.affine(vowel, -p["round_open_cut"], 1.0, name="not_open_lin"), name="not_open")
        not_spread = g.affine(cue["spread"], -1.0, 1.0, name="not_spread")
        round_ = g.mul(g.mul(g.mul(cue["round"], not_open), not_spread), free, name="round")

    out = g.op("Concat", open_, spread, round_, press, axis=1, name="concat")
    g.output(out, "articulation", ["B", 4])
    doc = (
        "a2v articulator v1: Wav2Lip log-mel window [B,1,80,16] of level-normalized 16 kHz speech (centre column 8 ="
        " video frame centre) -> articulation [B,4] = open, spread, round, press in 0..1. Hand-designed, not trained;"
        " built by models/build_models.py, see models/MODEL_CARD.md."
    )
    return g.model(doc)


# ----------------------------------------------------------------------------------------------------------------------
# 2. Mouth renderer: articulation + style + offset -> premultiplied RGB and alpha of a 128x96 patch
# ----------------------------------------------------------------------------------------------------------------------

# Geometry of the cartoon mouth (pixels; v grows downwards from the mouth centre, u rightwards from it).
# Every outline is a height field v = f(u); the signed distance of a pixel to it is approximated by
# (v - f(u)) / sqrt(1 + f'(u)^2), which is exact for straight edges and within a few hundredths of a pixel
# for these gentle curves; coverage = clip(0.5 - distance, 0, 1) (analytic antialiasing).
MOUTH_PARAMS: dict[str, float] = {
    "width_spread": 0.12,  # mouth half width = half_width * (1 + 0.12 spread - 0.30 round + 0.04 press - 0.06 open)
    "width_round": -0.30,
    "width_press": 0.04,
    "width_open": -0.06,
    "open_width": 0.86,  # opening half width / mouth half width ...
    "open_width_round": -0.24,  # ... narrower when rounded (an O)
    "open_width_press": -0.06,
    "open_width_open": -0.08,  # the corners close in a little as the jaw drops
    "seam": 1.15,  # px: the dark line between closed lips (an opening that never quite closes)
    "seam_press": -0.35,  # pressed lips: a thinner line
    "open_top": 0.34,  # share of the opening above the lip line (the jaw drops: most of it is below)
    "box": 0.45,  # opening profile (1 - t^2)(1 + box t^2): 0 = pointed lens, ~0.7 = ellipse-like, 1 = flat
    "box_spread": 0.55,  # spread flattens the opening (wider, straighter top and bottom)
    "box_round": 0.3,  # round makes it fuller (an O)
    "lip_box": 0.6,  # lip thickness profile (1 - t^2)(1 + lip_box t^2) along the mouth (0.7 x for the lower lip)
    "lip_box_round": 0.3,  # rounded lips stay thick further towards the corners
    "upper_lip": 1.0,  # upper lip thickness / lip_thickness
    "lower_lip": 1.3,  # lower lip thickness / lip_thickness
    "lip_press": -0.2,  # press thins both lips a little (v1: -0.45)
    "lip_round": 0.0,  # v1: 0.3 and -0.2: rounding and spreading changed lip thickness, which moved more pixels
    "lip_spread": 0.0,  # than the opening does and blurred what the mouth reads as (its first principal component)
    "bow_peak": 0.14,  # cupid's bow: the upper lip is fuller at +-0.28 of the half width ...
    "bow_dip": 0.3,  # ... with a notch at the centre
    "area_keep": 1.0,  # 1: the opening's area follows `open` alone (spread / round / press reshape it, ...
    "area_k_min": 0.5,  # ... within these height factors); 0: v1's heights (round shrank the opening)
    "area_k_max": 1.8,
    "open_max": 1.15,  # the opening is never taller than this share of max_open (a wide-open O stays sane)
    "teeth": 0.2,  # upper teeth band height / opening height (proportional: the dark share stays constant)
    "teeth_width": 0.8,  # teeth span this share of the opening's half width
    "tongue": 0.2,  # tongue height / opening height
    "tongue_width": 0.62,
    "upper_shade": 0.84,  # upper lip colour = lip * 0.84 (it faces down, away from the light)
    "highlight": 0.42,  # highlight colour = lip + 0.42 (1 - lip), at most 0.55 opacity, on the lower lip
    "highlight_alpha": 0.55,
    "tongue_mix": 0.55,  # tongue colour = 0.55 lip + 0.45 inner, lightened by 0.12
    "tongue_light": 0.12,
}
STYLE_LIMITS = {"half_width": (8.0, 40.0), "lip_thickness": (1.5, 10.0), "max_open": (0.0, 30.0)}
OFFSET_LIMIT = 2.0


def build_mouth(params: dict[str, float] | None = None, windowed: bool = False) -> onnx.ModelProto:
    """The mouth renderer; ``windowed`` (v3) adds a ``window`` input and draws only that rectangle of the patch.

    v3 computes every pixel exactly as v2 does (same outline samples, same per-pixel ops), so its output is
    the v2 patch cropped to the window: a caller that knows where its mouths can be pays for those pixels only.
    """
    q = {**MOUTH_PARAMS, **(params or {})}
    g = GraphBuilder("a2v_mouth_v3" if windowed else "a2v_mouth_v2")
    art_in = g.input("articulation", ["B", 4])
    style_in = g.input("style", ["B", len(STYLE)])
    offset_in = g.input("offset", ["B", 2])
    window_in = g.input("window", [4]) if windowed else None  # x0, y0, width, height in patch px (whole numbers)
    H, W = PATCH_H, PATCH_W
    n_half = 2 * W + 1  # outlines are sampled every half pixel: centres (odd) and pixel edges (even)
    end = n_half if window_in is None else 2**62  # a v3 slice runs to the end of whatever width the window has

    def c(v: float | np.ndarray, name: str = "c") -> str:
        return g.const(v, name)

    def mul(*xs: str) -> str:
        out = xs[0]
        for x in xs[1:]:
            out = g.mul(out, x)
        return out

    def lin(x: str, scale: float, shift: float) -> str:
        return g.affine(x, scale, shift)

    def axpy(base: float, *terms: tuple[float, str]) -> str:
        """base + sum(k * x) for [B,1] tensors."""
        out = None
        for k, x in terms:
            t = g.mul(x, c(k, "k"))
            out = t if out is None else g.add(out, t)
        assert out is not None
        return g.add(out, c(base, "base"))

    with g.scope("inputs"):
        art = g.clip01(art_in, name="articulation01")
        o, s, r, p = g.split(art, 4, axis=1, name="art")  # [B,1] each
        colours = g.clip01(g.op("Slice", style_in, g.ints([0]), g.ints([9]), g.ints([1])), name="colours")
        lip, inner, teeth = g.split(g.op("Reshape", colours, g.ints([-1, 3, 3])), 3, axis=1, name="colour")  # [B,1,3]

        def style_col(i: int, name: str) -> str:
            lo, hi = STYLE_LIMITS[name]
            v = g.op("Slice", style_in, g.ints([i]), g.ints([i + 1]), g.ints([1]), name=name + "_raw")
            return g.op("Clip", v, c(lo, "lo"), c(hi, "hi"), name=name)

        hw = style_col(9, "half_width")
        lt = style_col(10, "lip_thickness")
        mo = style_col(11, "max_open")
        off = g.op("Clip", offset_in, c(-OFFSET_LIMIT, "lo"), c(OFFSET_LIMIT, "hi"), name="offset_clip")
        dx, dy = g.split(off, 2, axis=1, name="off")
        cx = g.add(dx, c(W / 2, "centre_x"), name="cx")
        cy = g.add(dy, c(H / 2, "centre_y"), name="cy")

    with g.scope("shape"):  # per-mouth scalars [B,1]
        half = mul(hw, axpy(1.0, (q["width_spread"], s), (q["width_round"], r), (q["width_press"], p),
                            (q["width_open"], o)))  # fmt: skip
        half_open = mul(half, axpy(q["open_width"], (q["open_width_round"], r), (q["open_width_press"], p),
                                   (q["open_width_open"], o)))  # fmt: skip
        # The opening's area is what a viewer reads as "how open": keep it proportional to `open` whatever the
        # shape, by scaling the height against the width and profile changes (relative to a neutral, closed mouth).
        # area ~ half_open * height * (4/3 + 4/15 box); neutral: half_width * open_width, box = q["box"]
        box = axpy(q["box"], (q["box_spread"], s), (q["box_round"], r))
        width_ratio = g.op("Div", half_open, g.mul(hw, c(q["open_width"])))
        prof_ratio = g.op("Div", lin(box, 4.0 / 15.0, 4.0 / 3.0), c(4.0 / 3.0 + 4.0 / 15.0 * q["box"]))
        k = g.op("Reciprocal", g.mul(width_ratio, prof_ratio))
        k = g.op("Clip", lin(k, q["area_keep"], 1.0 - q["area_keep"]), c(q["area_k_min"], "k_lo"),
                 c(q["area_k_max"], "k_hi"), name="area_k")  # fmt: skip
        open_px = g.op("Min", mul(o, mo, k), g.mul(mo, c(q["open_max"])), name="open_px")  # open * max_open * k
        seam = axpy(q["seam"], (q["seam"] * q["seam_press"], p))
        height = g.op("Sqrt", g.add(g.mul(open_px, open_px), g.mul(seam, seam)), name="height")
        full = axpy(1.0, (q["lip_press"], p), (q["lip_round"], r), (q["lip_spread"], s))
        upper_t = mul(lt, full, c(q["upper_lip"], "upper"))
        lower_t = mul(lt, full, c(q["lower_lip"], "lower"))
        # band heights go negative (no band at all, not even an antialiased hairline) for small openings
        teeth_h = g.mul(open_px, c(q["teeth"]), name="teeth_h")
        tongue_h = g.mul(open_px, c(q["tongue"]), name="tongue_h")
        top_h = g.mul(height, c(q["open_top"]), name="top_h")
        bot_h = g.mul(height, c(1.0 - q["open_top"]), name="bottom_h")

    with g.scope("outline"):  # functions of u on the half-pixel grid, [B, 2W+1]
        if window_in is None:
            xs = c((np.arange(n_half, dtype=np.float32) / 2.0)[None, :], "x_half")
        else:
            wx0, wy0, ww, wh = g.split(window_in, 4, axis=0, name="window")
            # x0, x0 + 0.5, ..., x0 + w: the same half-pixel samples as v2's, from the window's left edge
            xs = g.op("Unsqueeze", g.op("Range", g.op("Squeeze", wx0), g.op("Squeeze", g.add(g.add(wx0, ww),
                      c([0.25], "quarter"))), c(0.5, "half_step")), g.ints([0]), name="x_half")  # fmt: skip
            y_first = g.op("Squeeze", g.add(wy0, c([0.5], "half_px")))
            y_rows = g.op("Range", y_first, g.op("Squeeze", g.add(wy0, wh)), c(1.0, "step"), name="y_rows")  # [h]
        u = g.sub(xs, cx, name="u")

        def sq(x: str) -> str:
            return g.mul(x, x)

        t = g.op("Div", u, half, name="t")
        t2 = sq(t)
        to2 = sq(g.op("Div", u, half_open, name="t_open"))
        one = c(1.0, "one")
        prof_open = mul(g.sub(one, to2), g.add(one, g.mul(box, to2)))  # (1 - t^2)(1 + box t^2), < 0 outside
        # the lips' outer outline follows the opening's profile stretched to the full mouth width, so the lips
        # wrap around the corners of the opening instead of thinning to a point there
        prof_wide = g.op("Relu", mul(g.sub(one, t2), g.add(one, g.mul(box, t2))))
        lip_box = axpy(q["lip_box"], (q["lip_box_round"], r))
        prof_upper = mul(g.sub(one, t2), g.add(one, g.mul(lip_box, t2)))
        prof_lower = mul(g.sub(one, t2), g.add(one, g.mul(g.mul(lip_box, c(0.7)), t2)))
        at = g.op("Abs", t)
        bump = g.op("Exp", g.mul(sq(lin(at, 1.0 / 0.15, -0.28 / 0.15)), c(-1.0)))
        notch = g.op("Exp", g.mul(sq(g.mul(t, c(1.0 / 0.09))), c(-1.0)))
        bow = axpy(1.0, (q["bow_peak"], bump), (-q["bow_dip"], notch))

        open_top = g.mul(top_h, prof_open, name="open_top")  # distance of the opening's top edge above v=0
        open_bot = g.mul(bot_h, prof_open, name="open_bottom")
        upper_edge = g.add(g.mul(top_h, prof_wide), mul(upper_t, prof_upper, bow), name="upper_edge")
        lower_edge = g.add(g.mul(bot_h, prof_wide), g.mul(lower_t, prof_lower), name="lower_edge")
        mid = g.mul(g.mul(g.sub(bot_h, top_h), c(0.5)), g.op("Relu", prof_open), name="mid")
        tt = g.op("Div", u, g.mul(half_open, c(q["teeth_width"])))
        teeth_edge = g.add(g.op("Neg", open_top), g.mul(teeth_h, g.sub(one, sq(sq(tt)))), name="teeth_edge")
        tg2 = sq(g.op("Div", u, g.mul(half_open, c(q["tongue_width"]))))
        tongue_edge = g.sub(open_bot, mul(tongue_h, g.sub(one, tg2), lin(tg2, 0.5, 1.0)), name="tongue_edge")
        neg = g.op("Neg", upper_edge)
        # Regions, each between a top and a bottom outline (v coordinates, down positive):
        #   0 mouth (alpha), 1 opening, 2 teeth band, 3 tongue, 4 upper lip (for shading)
        tops = [neg, g.op("Neg", open_top), g.op("Neg", open_top), tongue_edge, neg]
        bots = [lower_edge, open_bot, teeth_edge, lin(open_bot, 1.0, 3.0), mid]
        n_regions = len(tops)
        edges = g.op("Concat", *[g.op("Unsqueeze", e, g.ints([1])) for pair in zip(tops, bots, strict=True)
                                 for e in pair], axis=1, name="edges")  # [B, 2R, 2W+1]  # fmt: skip
        centre_vals = g.op("Slice", edges, g.ints([1]), g.ints([end]), g.ints([2]), g.ints([2]), name="at_centres")
        right = g.op("Slice", edges, g.ints([2]), g.ints([end]), g.ints([2]), g.ints([2]), name="right_edges")
        left = g.op("Slice", edges, g.ints([0]), g.ints([n_half - 1 if window_in is None else -1]), g.ints([2]),
                    g.ints([2]), name="left_edges")  # fmt: skip
        slope = g.sub(right, left, name="slope")  # per pixel
        inv_len = g.op("Reciprocal", g.op("Sqrt", g.add(sq(slope), one)), name="normal")  # [B,2R,W]
        # signed "inside" distance = sign * n * (v - f) with sign +1 for tops, -1 for bottoms; v = y - cy.
        sign = c(np.tile(np.array([1.0, -1.0], dtype=np.float32), n_regions)[None, :, None], "sign")
        a_coef = g.mul(inv_len, sign, name="a")  # coefficient of y
        cy3 = g.op("Unsqueeze", cy, g.ints([2]))
        b_coef = g.add(g.op("Neg", g.mul(a_coef, g.add(centre_vals, cy3))), c(0.5, "half_px"), name="b")
        coef = g.op("Concat", g.op("Unsqueeze", a_coef, g.ints([2])), g.op("Unsqueeze", b_coef, g.ints([2])),
                    axis=2, name="coef")  # [B,2R,2,W]  # fmt: skip

    with g.scope("raster"):
        if window_in is None:
            ys = np.stack([np.arange(H, dtype=np.float32) + 0.5, np.ones(H, dtype=np.float32)], axis=1)
            y_one = c(ys[None, None], "y_one")
            pair_shape = g.ints([-1, n_regions, 2, H, W])
        else:
            rows = g.op("Unsqueeze", y_rows, g.ints([1]))
            y_one = g.op("Unsqueeze", g.op("Concat", rows, g.add(g.mul(rows, c(0.0, "zero")), c(1.0, "one")), axis=1),
                         g.ints([0, 1]), name="y_one")  # fmt: skip
        vals = g.op("MatMul", y_one, coef, name="edge_values")  # [B,2R,H,W]
        if window_in is not None:
            pair_shape = g.op("Concat", g.ints([-1, n_regions, 2]), g.op("Shape", vals, start=2), axis=0)
        vals = g.op("Reshape", vals, pair_shape, name="pairs")
        cov = g.clip01(g.op("ReduceMin", vals, axes=[2], keepdims=0, name="inside"), name="coverage")  # [B,R,H,W]
        c_mouth, c_open, c_teeth, c_tongue, c_upper = g.split(cov, n_regions, axis=1, name="region")

    with g.scope("layers"):  # non-negative weights that sum to alpha
        alpha = c_mouth
        opening = g.mul(alpha, c_open, name="opening")
        lips = g.sub(alpha, opening, name="lips")
        teeth_w = g.mul(opening, c_teeth, name="teeth")
        rest = g.sub(opening, teeth_w, name="below_teeth")
        tongue_w = g.mul(rest, c_tongue, name="tongue")
        inner_w = g.sub(rest, tongue_w, name="inner")
        upper_w = g.mul(lips, c_upper, name="upper_lip")
        lower_w = g.sub(lips, upper_w, name="lower_lip")
        # soft highlight on the lower lip: separable Gaussian, centred below the opening
        uc = g.op("Slice", u, g.ints([1]), g.ints([end]), g.ints([1]), g.ints([2]), name="u_centres")  # [B,W]
        hx = g.op("Exp", g.mul(sq(g.op("Div", uc, g.mul(half, c(0.32)))), c(-1.0)))
        hx = g.op("Unsqueeze", g.mul(hx, c(q["highlight_alpha"])), g.ints([1, 2]), name="hx")  # [B,1,1,W]
        if window_in is None:
            yv = c((np.arange(H, dtype=np.float32) + 0.5)[None, :], "y_centres")
        else:
            yv = g.op("Unsqueeze", y_rows, g.ints([0]), name="y_centres")
        hl_y = g.add(g.add(cy, bot_h), g.mul(lower_t, c(0.45)))
        hy = g.op("Div", g.sub(yv, hl_y), g.add(g.mul(lower_t, c(0.28)), c(0.6)))
        hy = g.op("Unsqueeze", g.op("Exp", g.mul(sq(hy), c(-1.0))), g.ints([1, 3]), name="hy")  # [B,1,H,1]
        highlight_w = mul(lower_w, hx, hy)
        lower_w = g.sub(lower_w, highlight_w, name="lower_lip_rest")
        weights = g.op("Concat", upper_w, lower_w, highlight_w, inner_w, teeth_w, tongue_w, axis=1, name="weights")
        weights = g.op("Reshape", weights, g.ints([-1, 6, H * W] if window_in is None else [0, 6, -1]))

    with g.scope("colour"):  # [B,3,6] palette from the style colours
        upper_c = g.mul(lip, c(q["upper_shade"]))
        light = c(q["highlight"])
        high_c = g.add(lip, g.mul(g.sub(c(1.0), lip), light))
        tongue_c = g.add(g.add(g.mul(lip, c(q["tongue_mix"])), g.mul(inner, c(1.0 - q["tongue_mix"]))),
                         c(q["tongue_light"]))  # fmt: skip
        tongue_c = g.clip01(tongue_c)
        palette = g.op("Concat", upper_c, lip, high_c, inner, teeth, tongue_c, axis=1, name="palette_rows")  # [B,6,3]
        palette = g.op("Transpose", palette, perm=[0, 2, 1], name="palette")  # [B,3,6]
        rgb = g.op("MatMul", palette, weights, name="premultiplied")
        if window_in is None:
            rgb = g.op("Reshape", rgb, g.ints([-1, 3, H, W]))
        else:
            rgb = g.op("Reshape", rgb, g.op("Concat", g.ints([-1, 3]), g.op("Shape", alpha, start=2), axis=0))

    size = [H, W] if window_in is None else ["h", "w"]
    g.output(rgb, "rgb", ["B", 3, *size])
    g.output(alpha, "alpha", ["B", 1, *size])
    if window_in is not None:
        doc = (
            "a2v mouth renderer v3: v2 (below) plus window [4] (x0, y0, width, height in patch px, whole numbers):"
            " rgb [B,3,height,width] and alpha [B,1,height,width] are exactly v2's patch cropped to that rectangle,"
            " at the cost of its pixels only. Built by models/build_models.py, see models/MODEL_CARD.md."
        )
        return g.model(doc)
    doc = (
        "a2v mouth renderer v2: articulation [B,4] (open, spread, round, press 0..1), style [B,12] (lip, inner-mouth,"
        " teeth RGB 0..1; half_width, lip_thickness, max_open px), offset [B,2] (dx, dy px, -2..2) -> premultiplied"
        " rgb [B,3,96,128] and alpha [B,1,96,128]. Pixel (i, j) covers [j, j+1) x [i, i+1); the mouth centre is at"
        " x = 64 + dx, y = 48 + dy. Built by models/build_models.py, see models/MODEL_CARD.md."
    )
    return g.model(doc)


WARP_PARAMS: dict[str, float] = {
    "open_top": 0.34,  # share of the opening above the lip line, as the cartoon mouth (the jaw drops)
    # upper teeth band height / opening height: at 0.3 a landmark model put the inner upper lip inside a thin teeth
    # band and read mid openings as a plateau; a taller band reads as teeth under the lip (bench_photo, 2 faces)
    "teeth": 0.5,
    "tongue": 0.28,  # tongue hint height / opening height
    "edge": 1.5,  # px over which the inner mouth's edges blend (antialiased, slightly soft)
    "cavity_depth": 0.8,  # how much darker the back of the cavity is than its rim (a clear dark opening)
    "cavity_corner": 0.6,  # cavity brightness at the mouth's corners (shadowed) relative to the middle
    "lower_teeth": 0.12,  # lower teeth hint height / opening height, less lower_from px
    "lower_from": 3.0,
    "teeth_edge": 2.2,  # px over which the upper teeth's biting edge blends into the dark behind it
    "teeth_gum": 0.35,  # upper teeth: darkening at the gum line
    "teeth_corner": 0.5,  # upper teeth: darkening towards the mouth's corners
    "teeth_gap": 0.15,  # upper teeth: darkening along the line where two teeth meet
}


def build_warp(params: dict[str, float] | None = None) -> onnx.ModelProto:
    """Photo-pose warp: a region of the pose image resampled through a mix of displacement fields, plus a
    synthesized inner mouth where the lips part. See a2v_cli/engine/face_fields.py for how the fields are made."""
    q = {**WARP_PARAMS, **(params or {})}
    g = GraphBuilder("a2v_warp_v1")
    image = g.input("image", [1, 4, "H", "W"])
    grid = g.input("grid", [1, "h", "w", 2])
    basis = g.input("basis", ["K", "h", "w", 2])
    weights = g.input("weights", ["B", "K"])
    offset = g.input("offset", ["B", 2])
    maps = g.input("maps", [5, "h", "w"])
    opening = g.input("opening", ["B", 1])
    palette = g.input("palette", [3, 3])

    def c(v: float | np.ndarray, name: str = "c") -> str:
        return g.const(v, name)

    with g.scope("sample"):
        img_shape = g.op("Shape", image, name="image_shape")
        size_wh = g.op("Cast", g.op("Slice", img_shape, g.ints([3]), g.ints([1]), g.ints([0]), g.ints([-1]),
                                    name="wh"), to=TensorProto.FLOAT, name="wh_f")  # [W, H]  # fmt: skip
        grid_shape = g.op("Shape", grid, name="grid_shape")  # [1, h, w, 2]
        hw2 = g.op("Slice", grid_shape, g.ints([1]), g.ints([4]), name="hw2")
        k = g.op("Shape", basis, start=0, end=1, name="k")
        flat = g.op("Reshape", basis, g.op("Concat", k, g.ints([-1]), axis=0), name="basis_flat")  # [K, h*w*2]
        mixed = g.op("MatMul", weights, flat, name="mixed")  # [B, h*w*2]
        disp = g.op("Reshape", mixed, g.op("Concat", g.ints([-1]), hw2, axis=0), name="disp")  # [B, h, w, 2]
        off4 = g.op("Unsqueeze", offset, g.ints([1, 2]), name="offset4")  # [B,1,1,2]
        src = g.sub(g.add(grid, disp), off4, name="src_px")  # frame px (pixel-centre indices)
        norm = g.sub(g.mul(g.add(src, c(0.5)), g.op("Div", c(2.0), size_wh)), c(1.0), name="src_norm")
        # every frame's grid stacked along the height: one GridSample over the single image, no batch copy
        hh = g.op("Slice", grid_shape, g.ints([1]), g.ints([2]), name="h")
        ww = g.op("Slice", grid_shape, g.ints([2]), g.ints([3]), name="w")
        tall = g.op("Reshape", norm, g.op("Concat", g.ints([1, -1]), ww, g.ints([2]), axis=0), name="tall")
        sampled = g.op("GridSample", image, tall, align_corners=0, mode="bilinear", padding_mode="border",
                       name="sampled")  # [1, 4, B*h, w]  # fmt: skip
        per = g.op("Reshape", sampled, g.op("Concat", g.ints([4, -1]), hh, ww, axis=0), name="per_frame")
        warped = g.op("Transpose", per, perm=[1, 0, 2, 3], name="warped")  # [B, 4, h, w]
        rgb, matte = (g.op("Slice", warped, g.ints([0]), g.ints([3]), g.ints([1]), name="warped_rgb"),
                      g.op("Slice", warped, g.ints([3]), g.ints([4]), g.ints([1]), name="warped_matte"))

    with g.scope("mouth"):  # the inner mouth between the parted lips, all in px relative to the lip line
        v_map, prof, teeth_p, tongue_p, gaps = g.split(g.op("Unsqueeze", maps, g.ints([0])), 5, axis=1, name="map")
        dy = g.op("Slice", offset, g.ints([1]), g.ints([2]), g.ints([1]), name="dy")
        v = g.sub(v_map, g.op("Unsqueeze", dy, g.ints([2, 3])), name="v")  # [B,1,h,w]
        a = g.op("Unsqueeze", g.op("Relu", opening), g.ints([2, 3]), name="open_px")  # [B,1,1,1]
        thick = g.mul(a, prof, name="thickness")
        top = g.mul(thick, c(-q["open_top"]), name="top")
        bot = g.mul(thick, c(1.0 - q["open_top"]), name="bottom")
        one_px = c(1.0, "one_px")

        def soft(x: str, width: float, name: str) -> str:
            """0 -> 1 as the signed distance ``x`` (px) goes from -width/2 to +width/2: an antialiased, soft edge."""
            return g.ramp(x, -width / 2, width / 2, name=name)

        def per(x: str, d: str, name: str) -> str:  # x / max(d, 1 px): a position across a band, 0..1
            return g.clip01(g.op("Div", x, g.op("Max", d, one_px)), name=name)

        # the opening follows the warped inner lip contour; its edge is soft over about 1.5 px
        dist = g.op("Min", g.sub(v, top), g.sub(bot, v), name="inside_d")
        inside = g.mul(soft(dist, q["edge"], "inside_edge"), g.clip01(thick), name="inside")  # < 1 px thin: fainter
        # the cavity: the lips' warm red-brown at the lips and the corners, dark at the back (the middle)
        depth = per(dist, g.mul(thick, c(0.5)), "depth")
        depth = g.mul(depth, g.sub(c(2.0), depth), name="depth_ease")
        shade = g.mul(g.affine(depth, -q["cavity_depth"], 1.0, "cavity_back"),
                      g.affine(prof, 1.0 - q["cavity_corner"], q["cavity_corner"], "cavity_corners"), name="cavity")
        cav, teeth, tongue = (g.op("Reshape", x, g.ints([1, 3, 1, 1])) for x in g.split(palette, 3, 0, "colour"))
        col = g.mul(cav, shade, name="cavity_colour")
        # the tongue: low in the cavity, lit at its front (near the lower lip), fading into the dark behind
        tongue_h = g.mul(g.mul(a, tongue_p), c(q["tongue"]), name="tongue_h")
        tongue_in = g.sub(v, g.sub(bot, tongue_h), name="tongue_in")
        tongue_a = g.mul(soft(tongue_in, 2.5 * q["edge"], "tongue_edge"), g.clip01(g.mul(tongue_p, c(4.0))),
                         name="tongue_alpha")  # fmt: skip
        tongue_c = g.mul(tongue, g.affine(per(tongue_in, tongue_h, "tongue_pos"), 0.45, 0.4, "tongue_shade"))
        col = g.add(col, g.mul(g.sub(tongue_c, col), tongue_a), name="cavity_tongue")
        # lower teeth: only a hint, in the shadow of the upper ones, once the mouth is wide open
        low_h = g.mul(g.op("Relu", g.affine(thick, q["lower_teeth"], -q["lower_from"], "lower_h_lin")),
                      teeth_p, name="lower_h")  # fmt: skip
        low_in = g.sub(v, g.sub(bot, low_h), name="lower_in")
        low_a = g.mul(soft(low_in, q["edge"], "lower_edge"), g.clip01(low_h), name="lower_alpha")
        low_c = g.mul(teeth, g.affine(teeth_p, 0.25, 0.35, "lower_shade"), name="lower_colour")
        col = g.add(col, g.mul(g.sub(low_c, col), low_a), name="with_lower")
        # upper teeth: hang from the gum under the upper lip; shaded at the gum line and at the corners
        teeth_h = g.mul(g.mul(a, teeth_p), c(q["teeth"]), name="teeth_h")
        teeth_in = g.sub(g.add(top, teeth_h), v, name="teeth_in")  # > 0 above the biting edge
        teeth_a = g.mul(soft(teeth_in, q["teeth_edge"], "teeth_edge"), g.clip01(g.mul(teeth_p, c(4.0))),
                        name="teeth_alpha")  # fmt: skip
        down = per(g.sub(v, top), teeth_h, "teeth_pos")  # 0 at the gum line, 1 at the biting edge
        gum = g.affine(g.mul(down, g.sub(c(2.0), down)), q["teeth_gum"], 1.0 - q["teeth_gum"], "teeth_gum")
        corner = g.affine(g.mul(teeth_p, teeth_p), q["teeth_corner"], 1.0 - q["teeth_corner"], "teeth_corner")
        # the gaps between teeth: a faint line where two teeth meet
        gap = g.affine(g.sub(c(1.0), gaps), -q["teeth_gap"], 1.0, "teeth_gap_shade")
        teeth_c = g.mul(teeth, g.mul(g.mul(gum, corner), gap), name="teeth_colour")
        col = g.add(col, g.mul(g.sub(teeth_c, col), teeth_a), name="inner_colour")
        out_rgb = g.add(rgb, g.mul(g.sub(col, rgb), inside), name="out_rgb")
        rgba = g.op("Concat", out_rgb, matte, axis=1, name="rgba")
    g.output(rgba, "rgba", ["B", 4, "h", "w"])
    doc = (
        "a2v photo warp v1: image [1,4,H,W] (RGB + matte, 0..1), grid [1,h,w,2] (x, y frame px of the region's"
        " pixels), basis [K,h,w,2] (displacement fields, px), weights [B,K], offset [B,2] (head shift, px), maps"
        " [5,h,w] (v = px below the lip line, opening, teeth and tongue profiles, teeth gaps), opening [B,1] (px),"
        " palette [3,3] (cavity, teeth, tongue RGB) -> rgba [B,4,h,w]: the image sampled at grid + basis x weights"
        " - offset, with a shaded inner mouth (cavity, upper teeth, lower teeth hint, tongue) drawn where the lips"
        " part. Built by models/build_models.py, see models/MODEL_CARD.md."
    )
    return g.model(doc)


def build_all() -> dict[str, onnx.ModelProto]:
    """The models that ship (committed in models/ and packaged), by file name."""
    return {MOUTH_WINDOW_FILE: build_mouth(windowed=True), WARP_FILE: build_warp()}


def build_reference() -> dict[str, onnx.ModelProto]:
    """The old models, no longer committed: v1 articulator (the trained ones' gates come from it) and mouth v2 (v3
    without its window input), rebuilt here in milliseconds for comparisons."""
    return {ARTICULATOR_FILE: build_articulator(), MOUTH_FILE: build_mouth()}


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", type=Path, metavar="DIR",
                    help=f"also write the old {ARTICULATOR_FILE} and {MOUTH_FILE} into DIR (never models/)")
    args = ap.parse_args(argv)
    built = [(HERE / name, model) for name, model in build_all().items()]
    if args.reference:
        args.reference.mkdir(parents=True, exist_ok=True)
        built += [(args.reference / name, model) for name, model in build_reference().items()]
    for path, model in built:
        path.write_bytes(model.SerializeToString())
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
