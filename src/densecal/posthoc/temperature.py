"""Temperature scaling for dense binary and multi-class maps, fitted streaming over a loader.

Source: Guo et al., "On Calibration of Modern Neural Networks", ICML 2017, Sec. 4.2 (one scalar
``T > 0`` divides the logits, fitted by NLL on a validation split); docs/methods.md
section 2. The reference implementation (github.com/gpleiss/temperature_scaling) fits ``T`` by
full-batch LBFGS with a fixed learning rate on all logits in memory; on dense maps that does not
fit in memory and is known to diverge on binary maps. densecal instead:

* parameterises ``T = exp(log_t)`` and bounds it to ``[t_min, t_max]`` (default ``[0.05, 20]``):
  :meth:`TemperatureScaler.apply` clamps ``log_t`` on every call and fitting only ever evaluates
  and stores points inside the bounds;
* fits by a deterministic 1-D search on ``s = log T`` (:mod:`densecal.posthoc.search`): each step
  is one pass over the data that accumulates, in float64, the exact summed NLL and its first two
  derivatives in ``s`` (:mod:`densecal.posthoc.nll`); steps are bracketed Newton steps, direct
  evaluations of a bound, or bisections. The mean NLL is convex in ``1/T``, hence unimodal in
  ``s``, so the search cannot diverge; no learning rate, typically 3-7 passes.

The NLL is the mean over all non-ignored pixels of the split (pooled), BCE with logits for binary
maps (targets may be soft) and cross-entropy for multi-class maps (class indices or probability
maps).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from densecal._checks import parse_choice
from densecal.errors import input_error
from densecal.posthoc.nll import flatten_pixels, infer_task, scaled_nll_terms
from densecal.posthoc.search import minimise_unimodal
from densecal.posthoc.stream import Batches, PixelPasses
from densecal.types import DENSE_LOSS_TASKS, Task

__all__ = ["FitResult", "TemperatureScaler"]

_TASK_CODES: dict[Task | None, int] = {None: 0, Task.BINARY: 1, Task.MULTICLASS: 2}


@dataclass(frozen=True)
class FitResult:
    """What :meth:`TemperatureScaler.fit` found.

    Attributes:
        temperature: the fitted ``T`` in ``[t_min, t_max]`` (float64; the module stores it as
            ``log_t`` in its parameter dtype).
        nll_before: mean NLL per pixel at ``T = 1`` (the raw logits; the nearest bound if 1 lies
            outside the bounds).
        nll_after: mean NLL per pixel at the fitted ``T``; never above ``nll_before``.
        passes: full passes over the data (NLL evaluations).
        converged: whether the search met its tolerance before ``max_passes``.
        at_bound: whether ``T`` is exactly ``t_min`` or ``t_max`` (the optimum lies at or beyond
            the bound, e.g. a split whose pixels the model all gets right wants ``t_min``).
        n_pixels: number of pixels fitted on (ignored pixels excluded).
        history: ``(T, mean NLL)`` of every pass, in order.
    """

    temperature: float
    nll_before: float
    nll_after: float
    passes: int
    converged: bool
    at_bound: bool
    n_pixels: int
    history: tuple[tuple[float, float], ...] = ()


def _check_bounds(t_min: float, t_max: float) -> None:
    for name, value in (("t_min", t_min), ("t_max", t_max)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise input_error(name, f"must be a finite number > 0, got {value!r}")
    if t_min >= t_max:
        raise input_error("t_min", f"must be below t_max, got t_min={t_min}, t_max={t_max}")


class TemperatureScaler(nn.Module):
    """One temperature ``T`` for all pixels: calibrated logits are ``logits / T``.

    The state is ``log_t`` (a 0-dim ``nn.Parameter``, ``requires_grad=False`` so that a scaler
    inside a training model stays frozen; enable it to tune ``T`` by gradient, the clamp still
    applies) and a ``task_code`` buffer (0 unknown, 1 binary, 2 multi-class); both travel in
    :meth:`state_dict`. The bounds are constructor settings, not state.

    Args:
        task: ``"binary"`` (logits ``(N, *S)`` or ``(N, 1, *S)``, sigmoid) or ``"multiclass"``
            (logits ``(N, C, *S)``, softmax over ``C``); ``None`` infers it from the first fitted
            batch (see :func:`densecal.posthoc.nll.infer_task`).
        temperature: initial ``T`` in ``[t_min, t_max]``.
        t_min: lower bound on ``T`` (``> 0``), default 0.05.
        t_max: upper bound on ``T`` (``> t_min``), default 20.

    Raises:
        DensecalInputError: bad ``task``, bounds or ``temperature``.

    Example:
        >>> scaler = TemperatureScaler.from_temperature(2.0, task="binary")
        >>> scaler(torch.tensor([4.0, -1.0]))
        tensor([ 2.0000, -0.5000])
    """

    log_t: nn.Parameter
    task_code: Tensor

    def __init__(self, task: Task | None = None, *, temperature: float = 1.0,
                 t_min: float = 0.05, t_max: float = 20.0) -> None:
        super().__init__()
        _check_bounds(t_min, t_max)
        if task is not None:
            task = parse_choice(Task, task, "task", allowed=DENSE_LOSS_TASKS,
                                message="must be one of ('binary', 'multiclass') or None, got "
                                        "{value}")
        self.t_min, self.t_max = float(t_min), float(t_max)
        self.log_t = nn.Parameter(torch.tensor(self._checked_log_t(temperature)),
                                  requires_grad=False)
        self.register_buffer("task_code", torch.tensor(_TASK_CODES[task]))

    def _checked_log_t(self, temperature: float) -> float:
        if not isinstance(temperature, (int, float)) or not (
                self.t_min <= temperature <= self.t_max):
            raise input_error("temperature", f"must lie in [t_min, t_max] = [{self.t_min}, "
                                             f"{self.t_max}], got {temperature!r}")
        return math.log(temperature)

    @classmethod
    def from_temperature(cls, temperature: float, task: Task | None = None, *,
                         t_min: float = 0.05, t_max: float = 20.0) -> TemperatureScaler:
        """A scaler holding a known temperature (e.g. one stored with a checkpoint).

        Args:
            temperature: ``T`` in ``[t_min, t_max]``.
            task: as in the constructor.
            t_min: lower bound on ``T``.
            t_max: upper bound on ``T``.

        Returns:
            The scaler.

        Raises:
            DensecalInputError: ``temperature`` outside the bounds, bad bounds or task.
        """
        return cls(task, temperature=temperature, t_min=t_min, t_max=t_max)

    @property
    def task(self) -> Task | None:
        """The task, ``None`` until given or inferred by :meth:`fit`."""
        code = int(self.task_code)
        for task, value in _TASK_CODES.items():
            if value == code:
                return task
        raise input_error("task_code", f"unknown code {code} in the loaded state")

    def temperature_tensor(self) -> Tensor:
        """``T = exp(clamp(log_t, log t_min, log t_max))``, a 0-dim tensor (keeps autograd)."""
        return self.log_t.clamp(math.log(self.t_min), math.log(self.t_max)).exp()

    @property
    def temperature(self) -> float:
        """The temperature as a float, clamped into ``[t_min, t_max]``."""
        return float(self.temperature_tensor())

    def apply(self, logits: Tensor) -> Tensor:  # type: ignore[override]
        """Scale logits: ``logits / T``.

        This name shadows ``nn.Module.apply(fn)``; a callable argument that is not a tensor is
        passed on to it, so ``parent.apply(init_fn)`` still works on models holding a scaler.

        Args:
            logits: any shape, floating; the result keeps their dtype and device.

        Returns:
            ``logits / T``, same shape.
        """
        if not isinstance(logits, Tensor) and callable(logits):
            return super().apply(logits)  # type: ignore[return-value]
        return logits / self.temperature_tensor().to(logits.device)

    def forward(self, logits: Tensor) -> Tensor:
        """Same as :meth:`apply`."""
        return self.apply(logits)

    def probabilities(self, logits: Tensor) -> Tensor:
        """Calibrated probabilities: ``sigmoid(logits / T)`` (binary) or ``softmax`` over dim 1.

        Args:
            logits: binary ``(N, *S)`` / ``(N, 1, *S)``; multi-class ``(N, C, *S)``.

        Returns:
            Probabilities in ``[0, 1]``, same shape as ``logits``.

        Raises:
            DensecalInputError: the task is unknown (not given and not fitted yet).
        """
        task = self.task
        if task is None:
            raise input_error("task", "unknown: pass task= to the constructor or call fit first")
        scaled = self.apply(logits)
        return torch.sigmoid(scaled) if task == "binary" else torch.softmax(scaled, dim=1)

    def fit(self, batches: Batches, *, ignore_index: int | None = None, max_passes: int = 30,
            tol: float = 1e-4, cache_logits: bool = False) -> FitResult:
        """Fit ``T`` by minimising the mean NLL over every pixel of ``batches``.

        Starts at ``T = 1`` whatever the scaler held; each pass over ``batches`` evaluates the
        exact NLL and its derivatives in ``log T`` at one trial ``T`` (see the module docstring
        and :func:`densecal.posthoc.search.minimise_unimodal`). Logits are detached and read
        under ``torch.no_grad``; computation happens on the batches' device, in float64.

        Args:
            batches: ``(logits, target)`` pairs (shapes and ranges as in
                :func:`densecal.posthoc.nll.flatten_pixels`), typically a frozen model's outputs
                on a validation split: a re-iterable (list, DataLoader), a zero-argument callable
                returning a fresh iterable, or a one-shot iterator with ``cache_logits=True``.
                Every pass must yield the same pixels.
            ignore_index: target value of pixels to leave out (index maps and binary maps).
            max_passes: maximum passes over the data (``>= 1``), default 30.
            tol: tolerance on ``log T`` (``> 0``), default 1e-4 (``T`` to about 0.01 %).
            cache_logits: keep the kept pixels of the first pass on the CPU and replay them
                (memory: about ``pixels * channels * itemsize``, see
                :mod:`densecal.posthoc.stream`); needed for one-shot iterators.

        Returns:
            The :class:`FitResult`; ``log_t`` and the task are updated in place.

        Raises:
            DensecalInputError: empty data, bad shapes, non-finite logits, targets out of range,
                a task that does not match the scaler's, bad ``max_passes`` / ``tol``.
        """
        if not isinstance(max_passes, int) or max_passes < 1:
            raise input_error("max_passes", f"must be an integer >= 1, got {max_passes!r}")
        if not isinstance(tol, (int, float)) or not (tol > 0 and math.isfinite(tol)):
            raise input_error("tol", f"must be a finite number > 0, got {tol!r}")
        task_box: list[Task | None] = [self.task]

        def prepare(logits: Tensor, target: Tensor, where: str,
                    first_pass: bool) -> tuple[Tensor, Tensor]:
            if not isinstance(logits, Tensor) or not isinstance(target, Tensor):
                raise input_error(where, "each item must be a (logits, target) pair of tensors")
            if task_box[0] is None:
                task_box[0] = infer_task(logits, target, where)
            return flatten_pixels(logits, target, task=task_box[0], ignore_index=ignore_index,
                                  check_values=first_pass, where=where)

        passes = PixelPasses(batches, prepare, cache=cache_logits)
        evaluate = _streamed_objective(passes)
        lower, upper = math.log(self.t_min), math.log(self.t_max)
        with torch.no_grad():
            result = minimise_unimodal(evaluate, lower, upper, 0.0, tol=float(tol),
                                       max_evals=max_passes)
            self.log_t.fill_(result.x)
            self.task_code.fill_(_TASK_CODES[task_box[0]])
        assert passes.n_pixels is not None
        return FitResult(temperature=math.exp(result.x), nll_before=result.f_start,
                         nll_after=result.f, passes=result.evaluations,
                         converged=result.converged, at_bound=result.at_bound,
                         n_pixels=passes.n_pixels,
                         history=tuple((math.exp(s), f) for s, f in result.history))

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:.4g}, task={self.task}, " \
               f"bounds=[{self.t_min:g}, {self.t_max:g}]"


def _streamed_objective(passes: PixelPasses) -> Callable[[float], tuple[float, float, float]]:
    """``log T -> (mean NLL, d/dlogT, d2/dlogT2)``, one pass over the data per call."""

    def evaluate(log_t: float) -> tuple[float, float, float]:
        total: Tensor | None = None
        with torch.no_grad():
            for z, y in passes.chunks():
                terms = torch.stack(scaled_nll_terms(z, y, log_t))
                total = terms if total is None else total + terms.to(total.device)
        assert total is not None and passes.n_pixels
        mean = (total / passes.n_pixels).tolist()
        return mean[0], mean[1], mean[2]

    return evaluate
