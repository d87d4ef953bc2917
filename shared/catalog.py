"""The models a request may name, and how the service's parameters map onto each one's input.

The request keeps the old service's generic parameters (width, height, steps, guidance, ...).
Each model maps the ones it supports onto its own input and refuses, with a 422 naming the
field, any parameter it has no equivalent for or any value outside its range. Parameters the
client did not set are left to the model's own defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd
from typing import Any, Literal

from shared.errors import InvalidParameter
from shared.models import Adjustment, GenerateRequest

FLUX_SCHNELL = "black-forest-labs/flux-schnell"
SDXL = "stability-ai/sdxl"
# stability-ai/sdxl is a community model: it runs by version.
SDXL_VERSION = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"

FLUX_ASPECT_RATIOS = {"1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"}


@dataclass(frozen=True)
class ProviderPrice:
    """What Replicate charges for the model: per second of predict time (models billed by their
    hardware's time) or per output (official models billed by output), as listed on `source`."""

    usd: float
    per: Literal["second", "output"]
    as_of: str
    source: str

    def charge(self, predict_seconds: float | None, outputs: int) -> float | None:
        """The charge of one prediction; None when its predict time is unknown."""
        if self.per == "output":
            return self.usd * outputs
        return None if predict_seconds is None else self.usd * predict_seconds

    def basis(self, predict_seconds: float | None, outputs: int) -> str:
        if self.per == "output":
            return f"{outputs} output(s) x ${self.usd} per output"
        return f"{predict_seconds} s of predict time x ${self.usd} per second"


@dataclass(frozen=True)
class Model:
    name: str
    version: str | None  # None: an official model, run through its own predictions route
    supported: frozenset[str]  # the generic parameters it accepts
    price: ProviderPrice

    def input_for(self, request: GenerateRequest) -> dict[str, Any]:
        """The provider input for a request, or InvalidParameter naming the first bad field."""
        params = request.parameters
        explicit = params.model_fields_set - {"num_outputs", "seed"}
        for name in sorted(explicit - self.supported):
            raise InvalidParameter(f"parameters.{name}", f"not supported by {self.name}")
        values: dict[str, Any] = {"prompt": request.prompt, "num_outputs": params.num_outputs}
        if params.seed is not None:
            values["seed"] = params.seed
        return values | self._map(request, params.model_fields_set)

    def adapt(self, request: GenerateRequest) -> tuple[GenerateRequest, list[Adjustment]]:
        """For a request that names no model: drop the parameters this model has no equivalent
        for and clamp the steps to its range, instead of refusing them; each change is recorded."""
        params = request.parameters
        adjustments = [
            Adjustment(
                field=f"parameters.{name}", requested=getattr(params, name), reason=f"not supported by {self.name}"
            )
            for name in sorted(params.model_fields_set - {"num_outputs", "seed"} - self.supported)
        ]
        keep = {
            name: getattr(params, name)
            for name in params.model_fields_set
            if name in self.supported | {"num_outputs", "seed"}
        }
        low, high = self.steps
        if "num_inference_steps" in keep and not low <= keep["num_inference_steps"] <= high:
            steps = min(max(keep["num_inference_steps"], low), high)
            adjustments.append(
                Adjustment(
                    field="parameters.num_inference_steps",
                    requested=keep["num_inference_steps"],
                    applied=steps,
                    reason=f"{self.name} takes {low} to {high} steps",
                )
            )
            keep["num_inference_steps"] = steps
        adapted = request.model_copy(update={"parameters": type(params)(**keep)})
        return adapted, adjustments

    @property
    def steps(self) -> tuple[int, int]:
        return 1, 100

    def _map(self, request: GenerateRequest, explicit: set[str]) -> dict[str, Any]:
        raise NotImplementedError


class FluxSchnell(Model):
    """Sizes are an aspect ratio at 1 or 0.25 megapixels; 1 to 4 steps; no guidance."""

    @property
    def steps(self) -> tuple[int, int]:
        return 1, 4

    def _map(self, request: GenerateRequest, explicit: set[str]) -> dict[str, Any]:
        params = request.parameters
        values: dict[str, Any] = {}
        if {"width", "height"} & explicit:
            divisor = gcd(params.width, params.height)
            ratio = f"{params.width // divisor}:{params.height // divisor}"
            if ratio not in FLUX_ASPECT_RATIOS:
                raise InvalidParameter(
                    "parameters.width",
                    f"{params.width}x{params.height} is {ratio}; {self.name} supports the aspect ratios "
                    + ", ".join(sorted(FLUX_ASPECT_RATIOS)),
                )
            values["aspect_ratio"] = ratio
            values["megapixels"] = "1" if params.width * params.height > 512 * 512 * 2 else "0.25"
        if "num_inference_steps" in explicit:
            if params.num_inference_steps > 4:
                raise InvalidParameter("parameters.num_inference_steps", f"{self.name} takes 1 to 4 steps")
            values["num_inference_steps"] = params.num_inference_steps
        return values


class StableDiffusionXL(Model):
    def _map(self, request: GenerateRequest, explicit: set[str]) -> dict[str, Any]:
        params = request.parameters
        if "guidance_scale" in explicit and params.guidance_scale < 1:
            raise InvalidParameter("parameters.guidance_scale", f"{self.name} needs a guidance scale of 1 to 50")
        if {"width", "height"} & explicit and max(params.width, params.height) > 1536:
            raise InvalidParameter("parameters.width", f"{self.name} makes images up to 1536 pixels a side")
        names = ("width", "height", "num_inference_steps", "guidance_scale", "negative_prompt")
        return {name: getattr(params, name) for name in names if name in explicit}


# Replicate's list prices, recorded on PRICES_AS_OF from the pages named (not re-read from this
# offline machine): flux-schnell, an official model, is billed per output image; sdxl by the
# second on the hardware it runs on (Nvidia L40S).
PRICES_AS_OF = "2026-12-07"
MODELS: dict[str, Model] = {
    FLUX_SCHNELL: FluxSchnell(
        FLUX_SCHNELL,
        None,
        frozenset({"width", "height", "num_inference_steps"}),
        ProviderPrice(0.003, "output", PRICES_AS_OF, "https://replicate.com/black-forest-labs/flux-schnell"),
    ),
    SDXL: StableDiffusionXL(
        SDXL,
        SDXL_VERSION,
        frozenset({"width", "height", "num_inference_steps", "guidance_scale", "negative_prompt"}),
        ProviderPrice(0.000975, "second", PRICES_AS_OF, "https://replicate.com/pricing (Nvidia L40S GPU)"),
    ),
}


def model_named(name: str) -> Model:
    try:
        return MODELS[name]
    except KeyError:
        raise InvalidParameter("model", f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}") from None
