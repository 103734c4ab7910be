"""Read dlib's serialized face ResNet (``dlib_face_recognition_resnet_model_v1.dat``) without dlib.

Reading the file ourselves lets torch run the same network (faster, batched, trainable) while the
weights stay exactly those dlib ships. Only what this network uses is supported; anything else
fails loudly with the byte offset, so a different file cannot be misread silently.

File layout (dlib's ``serialize`` of ``loss_metric<fc_no_bias<... input_rgb_image_sized<150>>>``):
the loss layer, then one version int per layer wrapper (outermost first), then the input layer,
then each layer's own payload in input-first order. Tag and skip layers store nothing but their
version, so the caller's network definition has to supply the add_prev wiring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Version ints written by dlib's layer wrappers.
_ADD_LAYER = 2  # add_layer around another layer
_ADD_LAYER_ON_INPUT = 3  # add_layer whose subnet is the input layer
_TAG_OR_SKIP = 1  # add_tag_layer / add_skip_layer: indistinguishable in the file
_TENSOR_VERSION = 2
_ALIAS_TENSOR_VERSION = 1

# float_details exponents that encode non-finite values.
_SPECIAL_EXPONENTS = {32000: math.inf, 32001: -math.inf, 32002: math.nan}

TAG_OR_SKIP = "tag_or_skip"


@dataclass(frozen=True)
class LayerRecord:
    """One layer as stored: dlib's name, float32 parameters and integer geometry."""

    name: str
    offset: int
    params: dict[str, np.ndarray] = field(default_factory=dict)
    geometry: dict[str, int] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """Name without dlib's version suffix (``con_4`` -> ``con``, ``relu_`` -> ``relu``)."""
        return self.name.rstrip("0123456789").rstrip("_")


@dataclass(frozen=True)
class DlibNet:
    """Everything the file holds, layers in input-first order."""

    loss: str
    loss_params: dict[str, float]
    input_name: str
    channel_means: tuple[float, float, float]  # R, G, B
    input_size: tuple[int, int] | None  # (rows, cols); None for inputs of any size
    layers: list[LayerRecord]


class DatReader:
    """Sequential decoder of dlib's primitive encodings over an in-memory buffer.

    Tensor data is returned as ``np.frombuffer`` views (no copy), so they share the buffer's
    memory and are read-only when the buffer is ``bytes``.
    """

    def __init__(self, data: bytes | bytearray | memoryview, offset: int = 0):
        self.data = data
        self.pos = offset

    def error(self, what: str, at: int | None = None) -> ValueError:
        return ValueError(f"dlib .dat: {what} at byte offset {self.pos if at is None else at}")

    def _take(self, n: int, what: str) -> int:
        """Reserve ``n`` bytes and return their start, or fail naming the truncation point."""
        start = self.pos
        if n < 0 or start + n > len(self.data):
            raise self.error(f"truncated {what} (need {n} bytes, {len(self.data) - start} left)")
        self.pos = start + n
        return start

    def at_end(self) -> bool:
        return self.pos == len(self.data)

    def read_int(self) -> int:
        """A control byte (bit 7: negative, low nibble: byte count), then the magnitude (LE)."""
        start = self._take(1, "integer")
        control = self.data[start]
        size = control & 0x0F
        if control & 0x70 or not 1 <= size <= 8:
            raise self.error(f"invalid integer control byte 0x{control:02x}", start)
        body = self._take(size, "integer")
        value = int.from_bytes(self.data[body : body + size], "little")
        return -value if control & 0x80 else value

    def read_float(self) -> float:
        """dlib float_details: int64 mantissa, then int16 exponent; value = mantissa * 2**exp."""
        start = self.pos
        if start >= len(self.data):
            raise self.error("truncated float")
        if self.data[start] & 0x70:
            raise self.error("unsupported old-style text float", start)
        mantissa = self.read_int()
        exponent = self.read_int()
        if exponent in _SPECIAL_EXPONENTS:
            return _SPECIAL_EXPONENTS[exponent]
        if not -(2**15) <= exponent < 2**15 or not -(2**63) <= mantissa < 2**63:
            raise self.error(f"float out of range (mantissa {mantissa}, exp {exponent})", start)
        return math.ldexp(mantissa, exponent)

    def read_bool(self) -> bool:
        start = self._take(1, "bool")
        byte = self.data[start]
        if byte not in (ord("0"), ord("1")):
            raise self.error(f"invalid bool byte 0x{byte:02x}", start)
        return byte == ord("1")

    def read_string(self) -> str:
        start = self.pos
        length = self.read_int()
        if length < 0:
            raise self.error(f"negative string length {length}", start)
        body = self._take(length, "string")
        try:
            return bytes(self.data[body : body + length]).decode("ascii")
        except UnicodeDecodeError:
            raise self.error("non-ASCII string", body) from None

    def _read_shape(self, version: int, what: str) -> tuple[int, int, int, int]:
        start = self.pos
        found = self.read_int()
        if found != version:
            raise self.error(f"{what} version {found}, expected {version}", start)
        shape = tuple(self.read_int() for _ in range(4))
        if min(shape) < 0:
            raise self.error(f"negative {what} shape {shape}", start)
        return shape  # type: ignore[return-value]

    def read_tensor(self) -> np.ndarray:
        """resizable_tensor: version 2, shape (n, k, nr, nc), raw little-endian float32 NCHW."""
        shape = self._read_shape(_TENSOR_VERSION, "tensor")
        count = math.prod(shape)
        start = self._take(4 * count, "tensor data")
        return np.frombuffer(self.data, dtype="<f4", count=count, offset=start).reshape(shape)

    def read_alias_tensor(self) -> tuple[int, int, int, int]:
        """alias_tensor: version 1 and a shape, no data."""
        return self._read_shape(_ALIAS_TENSOR_VERSION, "alias_tensor")


# --- layer payloads -------------------------------------------------------------------------------


def _read_multipliers(r: DatReader) -> None:
    """Learning-rate and weight-decay multipliers: training settings, not needed for inference."""
    for _ in range(4):
        r.read_float()


def _read_con(r: DatReader, name: str, offset: int) -> LayerRecord:
    params = r.read_tensor().reshape(-1)
    keys = ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
    geometry = {k: r.read_int() for k in keys}
    k, c, h, w = r.read_alias_tensor()
    bias_shape = r.read_alias_tensor()
    _read_multipliers(r)
    n_weights = k * c * h * w
    if bias_shape != (1, k, 1, 1) or params.size != n_weights + k or k != geometry["num_filters"]:
        found = f"params {params.size}, filters {(k, c, h, w)}"
        raise r.error(f"{name}: inconsistent shapes ({found})", offset)
    geometry["in_channels"] = c
    weight = params[:n_weights].reshape(k, c, h, w)
    return LayerRecord(name, offset, {"weight": weight, "bias": params[n_weights:]}, geometry)


def _read_affine(r: DatReader, name: str, offset: int) -> LayerRecord:
    params = r.read_tensor().reshape(-1)
    gamma_shape = r.read_alias_tensor()
    r.read_alias_tensor()  # beta: same shape as gamma
    mode = r.read_int()
    k = math.prod(gamma_shape)
    if params.size != 2 * k:
        raise r.error(f"{name}: {params.size} params for {k} channels", offset)
    return LayerRecord(name, offset, {"gamma": params[:k], "beta": params[k:]}, {"mode": mode})


def _read_pool(r: DatReader, name: str, offset: int) -> LayerRecord:
    keys = ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
    return LayerRecord(name, offset, {}, {k: r.read_int() for k in keys})


def _read_fc(r: DatReader, name: str, offset: int) -> LayerRecord:
    num_outputs = r.read_int()
    num_inputs = r.read_int()
    params = r.read_tensor().reshape(-1)
    r.read_alias_tensor()  # weights: (num_inputs, num_outputs)
    r.read_alias_tensor()  # biases
    bias_mode = r.read_int()
    _read_multipliers(r)
    n_weights = num_inputs * num_outputs
    n_bias = num_outputs if bias_mode == 0 else 0
    if params.size != n_weights + n_bias:
        raise r.error(f"{name}: {params.size} params for {num_inputs}x{num_outputs}", offset)
    found = {"weight": params[:n_weights].reshape(num_inputs, num_outputs)}
    if n_bias:
        found["bias"] = params[n_weights:]
    geometry = {"num_outputs": num_outputs, "num_inputs": num_inputs, "bias_mode": bias_mode}
    return LayerRecord(name, offset, found, geometry)


def _read_nothing(r: DatReader, name: str, offset: int) -> LayerRecord:
    return LayerRecord(name, offset)


_LAYER_READERS = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "relu_": _read_nothing,
    "add_prev_": _read_nothing,
    "max_pool_2": _read_pool,
    "avg_pool_2": _read_pool,
    "fc_2": _read_fc,
}


def _read_layer(r: DatReader) -> LayerRecord:
    offset = r.pos
    name = r.read_string()
    reader = _LAYER_READERS.get(name)
    if reader is None:
        raise r.error(f"unsupported layer {name!r}", offset)
    return reader(r, name, offset)


def _read_wrapper_trailer(r: DatReader, on_input: bool) -> None:
    """add_layer's bookkeeping after the details: 3 bools, 3 (training) tensors, maybe an int."""
    for _ in range(3):
        r.read_bool()
    for _ in range(3):
        r.read_tensor()
    if on_input:
        r.read_int()  # sample expansion factor


# --- whole file -----------------------------------------------------------------------------------


def _read_loss(r: DatReader) -> tuple[str, dict[str, float]]:
    start = r.pos
    if (version := r.read_int()) != 1:
        raise r.error(f"loss layer version {version}, expected 1", start)
    offset = r.pos
    name = r.read_string()
    if name != "loss_metric_2":
        raise r.error(f"unsupported loss layer {name!r}", offset)
    return name, {"margin": r.read_float(), "dist_thresh": r.read_float()}


def _read_wrapper_versions(r: DatReader) -> list[int]:
    """Version ints of the wrappers, outermost first, up to the one around the input layer."""
    versions: list[int] = []
    while True:
        start = r.pos
        version = r.read_int()
        if version not in (_ADD_LAYER, _ADD_LAYER_ON_INPUT, _TAG_OR_SKIP):
            raise r.error(f"unexpected layer wrapper version {version}", start)
        versions.append(version)
        if version == _ADD_LAYER_ON_INPUT:
            return versions


def _read_input(r: DatReader) -> tuple[str, tuple[float, float, float], tuple[int, int] | None]:
    offset = r.pos
    name = r.read_string()
    if name not in ("input_rgb_image_sized", "input_rgb_image"):
        raise r.error(f"unsupported input layer {name!r}", offset)
    means = (r.read_float(), r.read_float(), r.read_float())
    size = (r.read_int(), r.read_int()) if name == "input_rgb_image_sized" else None
    return name, means, size


def parse_dat(data: bytes | bytearray | memoryview) -> DlibNet:
    """Parse a whole serialized network; the file must end exactly after the last layer."""
    r = DatReader(data)
    loss, loss_params = _read_loss(r)
    versions = _read_wrapper_versions(r)
    input_name, means, size = _read_input(r)
    layers = [_read_layer(r)]
    _read_wrapper_trailer(r, on_input=True)
    for version in reversed(versions[:-1]):  # innermost wrapper's payload comes first
        if version == _TAG_OR_SKIP:
            layers.append(LayerRecord(TAG_OR_SKIP, r.pos))
            continue
        layers.append(_read_layer(r))
        _read_wrapper_trailer(r, on_input=False)
    if not r.at_end():
        raise r.error(f"{len(data) - r.pos} unexpected trailing bytes")
    return DlibNet(loss, loss_params, input_name, means, size, layers)


def read_dat(path: str | Path) -> DlibNet:
    """Parse a .dat file, read once into a writable buffer that the weight arrays then view."""
    path = Path(path)
    buf = bytearray(path.stat().st_size)
    with path.open("rb") as f:
        if f.readinto(buf) != len(buf):
            raise ValueError(f"{path}: file changed while reading")
    try:
        return parse_dat(buf)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
