"""The models the double knows: their input schemas (validated the way Replicate does), output sizes,
the images they "generate" (real files rendered with Pillow) and their tqdm-style logs."""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw

# flux-schnell is an official model: it is created through /v1/models/{owner}/{name}/predictions and
# its predictions carry a deployment-style version ("dp-" + 32 hex), as in the official-model replies
# recorded in the client's test cassettes. The value itself is the double's own.
FLUX_SCHNELL = "black-forest-labs/flux-schnell"
FLUX_SCHNELL_VERSION = "dp-4d0bcc010b3049749a251855f12800be"

# stability-ai/sdxl is addressed by version. This is its latest version id (created 2023-11-06), as
# returned by GET /v1/models/stability-ai/sdxl in the client's recorded responses.
SDXL = "stability-ai/sdxl"
SDXL_VERSION = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"

# flux-schnell (replicate/cog-flux): width x height at 1 megapixel; "0.25" halves both sides.
FLUX_ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "21:9": (1536, 640),
    "3:2": (1216, 832),
    "2:3": (832, 1216),
    "4:5": (896, 1088),
    "5:4": (1088, 896),
    "3:4": (896, 1152),
    "4:3": (1152, 896),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}

SDXL_SCHEDULERS = (
    "DDIM",
    "DPMSolverMultistep",
    "HeunDiscrete",
    "KarrasDPM",
    "K_EULER_ANCESTRAL",
    "K_EULER",
    "PNDM",
)
SDXL_REFINERS = ("no_refiner", "expert_ensemble_refiner", "base_image_refiner")

CONTENT_TYPES = {"webp": "image/webp", "png": "image/png", "jpg": "image/jpeg"}
_PIL_FORMATS = {"webp": "WEBP", "png": "PNG", "jpg": "JPEG"}


class InputInvalid(Exception):
    """Input refused before a prediction exists: 422 with Replicate's `invalid_fields` list."""

    def __init__(self, invalid_fields: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f["description"] for f in invalid_fields))
        self.invalid_fields = invalid_fields


@dataclass(frozen=True)
class Field:
    """One input property, as in the model's OpenAPI schema."""

    type: str  # "string" | "integer" | "number" | "boolean"
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    required: bool = False


@dataclass(frozen=True)
class Model:
    name: str  # owner/name
    version: str
    schema: Mapping[str, Field]
    # (validated input) -> [(width, height, format)], one entry per output file
    outputs: Callable[[dict[str, Any]], list[tuple[int, int, str]]]
    steps: Callable[[dict[str, Any]], int]
    preamble: str  # what the model prints before its progress bar
    official: bool = False
    # A problem only found while running (as the real model raises it): the prediction fails.
    runtime_error: Callable[[dict[str, Any]], str | None] = field(default=lambda _: None)

    def validate(self, raw: Any) -> dict[str, Any]:
        """Input with defaults applied, or InputInvalid listing every offending field.

        Unknown input keys are kept and ignored, as Replicate does for model inputs."""
        if not isinstance(raw, dict):
            raise InputInvalid([_invalid("invalid_type", "input", "Invalid type. Expected: object")])
        problems: list[dict[str, str]] = []
        result = dict(raw)
        for name, spec in self.schema.items():
            if name not in raw or raw[name] is None:
                if spec.required:
                    problems.append(_invalid("required", "input", f"{name} is required"))
                elif spec.default is not None:
                    result[name] = spec.default
                continue
            problems.extend(_check(f"input.{name}", name, spec, raw[name]))
        if problems:
            raise InputInvalid(problems)
        return result


def _invalid(kind: str, where: str, description: str) -> dict[str, str]:
    return {"type": kind, "field": where, "description": description}


_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", list: "array", dict: "object"}


def _check(where: str, name: str, spec: Field, value: Any) -> list[dict[str, str]]:
    # bool is an int in Python but not in JSON Schema, hence the explicit checks.
    ok = {
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
    }[spec.type]
    if not ok:
        given = _JSON_TYPES.get(type(value), "null")
        return [_invalid("invalid_type", where, f"Invalid type. Expected: {spec.type}, given: {given}")]
    if spec.choices is not None and value not in spec.choices:
        listed = ", ".join(f'"{c}"' for c in spec.choices)
        return [_invalid("enum", where, f"{name} must be one of the following: {listed}")]
    if spec.minimum is not None and value < spec.minimum:
        return [_invalid("number_gte", where, f"Must be greater than or equal to {spec.minimum:g}")]
    if spec.maximum is not None and value > spec.maximum:
        return [_invalid("number_lte", where, f"Must be less than or equal to {spec.maximum:g}")]
    return []


# ---- the two models -------------------------------------------------------------------------------
def flux_size(aspect_ratio: str, megapixels: str) -> tuple[int, int]:
    width, height = FLUX_ASPECT_RATIOS[aspect_ratio]
    if megapixels == "0.25":
        width, height = width // 2, height // 2
    return width, height


FLUX_SCHNELL_MODEL = Model(
    name=FLUX_SCHNELL,
    version=FLUX_SCHNELL_VERSION,
    official=True,
    schema={
        "prompt": Field("string", required=True),
        "aspect_ratio": Field("string", "1:1", choices=tuple(FLUX_ASPECT_RATIOS)),
        "num_outputs": Field("integer", 1, 1, 4),
        "num_inference_steps": Field("integer", 4, 1, 4),
        "seed": Field("integer"),
        "output_format": Field("string", "webp", choices=("webp", "jpg", "png")),
        "output_quality": Field("integer", 80, 0, 100),
        "disable_safety_checker": Field("boolean", False),
        "go_fast": Field("boolean", True),
        "megapixels": Field("string", "1", choices=("1", "0.25")),
    },
    outputs=lambda i: [(*flux_size(i["aspect_ratio"], i["megapixels"]), i["output_format"])] * i["num_outputs"],
    steps=lambda i: i["num_inference_steps"],
    preamble="running quantized prediction",
)


def _sdxl_runtime_error(i: dict[str, Any]) -> str | None:
    width, height = i["width"], i["height"]
    if width < 8 or height < 8 or width % 8 or height % 8:
        # What diffusers raises inside the model: the prediction fails, it is not a 422.
        return f"`height` and `width` have to be divisible by 8 but are {height} and {width}."
    if width * height > 4096 * 4096:  # the double's own guard against absurd renders
        return "CUDA out of memory. Tried to allocate more memory than the GPU has."
    return None


SDXL_MODEL = Model(
    name=SDXL,
    version=SDXL_VERSION,
    schema={
        "prompt": Field("string", "An astronaut riding a rainbow unicorn"),
        "negative_prompt": Field("string", ""),
        "image": Field("string"),
        "mask": Field("string"),
        "width": Field("integer", 1024),
        "height": Field("integer", 1024),
        "num_outputs": Field("integer", 1, 1, 4),
        "scheduler": Field("string", "K_EULER", choices=SDXL_SCHEDULERS),
        "num_inference_steps": Field("integer", 50, 1, 500),
        "guidance_scale": Field("number", 7.5, 1, 50),
        "prompt_strength": Field("number", 0.8, 0, 1),
        "seed": Field("integer"),
        "refine": Field("string", "no_refiner", choices=SDXL_REFINERS),
        "high_noise_frac": Field("number", 0.8, 0, 1),
        "refine_steps": Field("integer"),
        "apply_watermark": Field("boolean", True),
        "lora_scale": Field("number", 0.6, 0, 1),
        "replicate_weights": Field("string"),
        "disable_safety_checker": Field("boolean", False),
    },
    outputs=lambda i: [(i["width"], i["height"], "png")] * i["num_outputs"],
    steps=lambda i: i["num_inference_steps"],
    preamble="txt2img mode",
    runtime_error=_sdxl_runtime_error,
)

MODELS: dict[str, Model] = {m.name: m for m in (FLUX_SCHNELL_MODEL, SDXL_MODEL)}
VERSIONS: dict[str, Model] = {m.version: m for m in MODELS.values() if not m.official}


# ---- outputs ------------------------------------------------------------------------------------
def render(width: int, height: int, fmt: str, *, label: str, seed: int, quality: int = 80) -> bytes:
    """A real image file of the requested size and format: a gradient picked by the seed, labelled."""
    rng = random.Random(f"{seed}:{label}")
    corners = Image.new("RGB", (2, 2))
    corners.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(4)])
    image = corners.resize((width, height), Image.Resampling.BILINEAR)
    ImageDraw.Draw(image).text((8, 8), label[:80], fill=(255, 255, 255))
    buffer = io.BytesIO()
    options: dict[str, Any] = {"compress_level": 1} if fmt == "png" else {"quality": quality}
    image.save(buffer, _PIL_FORMATS[fmt], **options)
    return buffer.getvalue()


def seed_of(input: dict[str, Any]) -> int:
    """The seed the model prints: the given one, else one derived from the prompt (deterministic)."""
    if isinstance(input.get("seed"), int):
        return input["seed"]
    return int.from_bytes(hashlib.sha256(str(input.get("prompt")).encode()).digest()[:2], "big")


# ---- progress logs ------------------------------------------------------------------------------
_PARTIAL_BLOCKS = " ▏▎▍▌▋▊▉"


def tqdm_line(done: int, total: int, elapsed: float) -> str:
    """One tqdm progress line, e.g. ' 40%|████      | 2/5 [00:00<00:00, 16.50it/s]'.

    The client's Prediction.progress parses these with ^\\s*(\\d+)%\\s*\\|.+?\\|\\s*(\\d+)/(\\d+)."""
    fraction = done / total if total else 1.0
    eighths = int(fraction * 10 * 8)
    bar = "█" * (eighths // 8)
    if len(bar) < 10:
        bar += _PARTIAL_BLOCKS[eighths % 8]
    bar = bar.ljust(10)
    if done == 0 or elapsed <= 0:
        timing = f"[{_clock(elapsed)}<?, ?it/s]"
    else:
        rate = done / elapsed
        timing = f"[{_clock(elapsed)}<{_clock((total - done) / rate)}, {rate:5.2f}it/s]"
    return f"{int(fraction * 100):3d}%|{bar}| {done}/{total} {timing}"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"
