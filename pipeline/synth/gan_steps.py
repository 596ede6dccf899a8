"""GAN update steps for the TensorFlow and JAX Keras backends, written once.

A GAN states each kind of training step as a :class:`Step`: an *objective* that runs its nets on a
batch and returns named scalars (losses and anything worth logging) plus outputs for the host
(e.g. generated images), and the :class:`Update` s that minimise some of those scalars.
:func:`make_steps` compiles every step for the running backend (``tf.function`` over a
``tf.GradientTape``, or ``jax.jit`` over ``stateless_call`` and ``jax.vjp``).

Every update of one step differentiates the same forward pass, so each net sees the weights it
had before the step (the discriminator's gradient uses the generator's output as a constant).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import keras
import numpy as np
from keras import ops

NetCall = Callable[[str, Any], Any]
"""``call(name, x)``: run the net called ``name`` on ``x`` in training mode."""

Objective = Callable[..., tuple[dict[str, Any], tuple[Any, ...]]]
"""``objective(call, *batch) -> (scalars, outputs)``, written with ``keras.ops`` only."""


@dataclass(frozen=True)
class Update:
    """One optimizer update inside a step.

    Parameters
    ----------
    loss: str
        Key of the objective's scalars that this update minimises.
    nets: tuple[str, ...]
        Nets whose trainable variables it changes, in the order the optimizer was built with.
    optimizer: keras.optimizers.Optimizer
        The optimizer; it is built on the nets' variables if it is not built yet.
    """

    loss: str
    nets: tuple[str, ...]
    optimizer: keras.optimizers.Optimizer


@dataclass(frozen=True)
class Step:
    """A kind of training step: an objective and the updates taken from one forward pass of it."""

    objective: Objective
    updates: tuple[Update, ...]


class Steps(Protocol):
    """Compiled steps of one GAN, run by name."""

    def __call__(self, name: str, *batch: Any) -> tuple[dict[str, float], tuple[np.ndarray, ...]]:
        """Run step ``name`` on ``batch``; returns its scalars as floats and its outputs as arrays."""
        ...

    def sync(self) -> None:
        """Make the Keras variables current (before saving, predicting or reading the optimizer)."""
        ...

    def reload(self) -> None:
        """Take the training state from the Keras variables again (after restoring a checkpoint)."""
        ...


def make_steps(nets: Mapping[str, keras.Model], steps: Mapping[str, Step]) -> Steps:
    """Compile ``steps`` over ``nets`` for the running Keras backend.

    Parameters
    ----------
    nets: Mapping[str, keras.Model]
        The GAN's nets by the names that objectives and updates use.
    steps: Mapping[str, Step]
        The kinds of step, by name.

    Returns
    -------
    Steps
        Callable as ``steps(name, *batch)``.

    Raises
    ------
    ValueError
        If an update names an unknown net, or one net is trained by two updates of a step.
    RuntimeError
        If the backend is neither TensorFlow nor JAX.
    """
    for name, step in steps.items():
        trained = [k for u in step.updates for k in u.nets]
        if len(set(trained)) != len(trained) or not set(trained) <= set(nets):
            raise ValueError(f"step {name!r}: each update needs its own known nets, got {trained}")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return TFSteps(nets, steps)
    if backend == "jax":
        return JaxSteps(nets, steps)
    raise RuntimeError(f"GAN training supports the tensorflow and jax backends, not {backend}")


class _BackendSteps:
    def __init__(self, nets: Mapping[str, keras.Model], steps: Mapping[str, Step]) -> None:
        self.nets = dict(nets)
        self.steps = dict(steps)
        self.optimizers: list[keras.optimizers.Optimizer] = []
        for step in steps.values():
            for u in step.updates:
                if not any(u.optimizer is o for o in self.optimizers):
                    self.optimizers.append(u.optimizer)
                if not u.optimizer.built:
                    u.optimizer.build(self.variables(u))

    def variables(self, update: Update) -> list[Any]:
        return [v for k in update.nets for v in self.nets[k].trainable_variables]

    def _run(self, name: str, *batch: Any) -> tuple[dict[str, Any], tuple[Any, ...]]:
        raise NotImplementedError

    def __call__(self, name: str, *batch: Any) -> tuple[dict[str, float], tuple[np.ndarray, ...]]:
        scalars, outputs = self._run(name, *batch)
        return ({k: float(ops.convert_to_numpy(v)) for k, v in scalars.items()},
                tuple(np.asarray(ops.convert_to_numpy(o)) for o in outputs))

    def sync(self) -> None:
        return None

    def reload(self) -> None:
        return None


class TFSteps(_BackendSteps):
    """TensorFlow: one ``tf.function`` per step; the Keras variables are the training state."""

    def __init__(self, nets: Mapping[str, keras.Model], steps: Mapping[str, Step]) -> None:
        import tensorflow as tf

        super().__init__(nets, steps)
        self._compiled = {name: tf.function(self._step_fn(step), reduce_retracing=True)
                          for name, step in self.steps.items()}

    def _step_fn(self, step: Step) -> Callable[..., tuple[dict[str, Any], tuple[Any, ...]]]:
        import tensorflow as tf

        def call(name: str, x: Any) -> Any:
            return self.nets[name](x, training=True)

        def run(*batch: Any) -> tuple[dict[str, Any], tuple[Any, ...]]:
            with tf.GradientTape(persistent=len(step.updates) > 1) as tape:
                scalars, outputs = step.objective(call, *batch)
            grads = [tape.gradient(scalars[u.loss], self.variables(u)) for u in step.updates]
            for u, g in zip(step.updates, grads):
                u.optimizer.apply_gradients(zip(g, self.variables(u)))
            return scalars, tuple(outputs)

        return run

    def _run(self, name: str, *batch: Any) -> tuple[dict[str, Any], tuple[Any, ...]]:
        return self._compiled[name](*batch)


class JaxSteps(_BackendSteps):
    """JAX: the training state lives in arrays outside the Keras variables (``sync`` writes it back)."""

    def __init__(self, nets: Mapping[str, keras.Model], steps: Mapping[str, Step]) -> None:
        import jax

        super().__init__(nets, steps)
        self.reload()
        self._compiled = {name: jax.jit(self._step_fn(step)) for name, step in self.steps.items()}

    def reload(self) -> None:
        self._tv = {k: [v.value for v in n.trainable_variables] for k, n in self.nets.items()}
        self._ntv = {k: [v.value for v in n.non_trainable_variables] for k, n in self.nets.items()}
        self._opt = [[v.value for v in o.variables] for o in self.optimizers]

    def sync(self) -> None:
        for k, net in self.nets.items():
            for v, a in zip(net.trainable_variables, self._tv[k]):
                v.assign(a)
            for v, a in zip(net.non_trainable_variables, self._ntv[k]):
                v.assign(a)
        for opt, values in zip(self.optimizers, self._opt):
            for v, a in zip(opt.variables, values):
                v.assign(a)

    def _opt_index(self, update: Update) -> int:
        return next(i for i, o in enumerate(self.optimizers) if o is update.optimizer)

    def _step_fn(self, step: Step) -> Callable[..., Any]:
        import jax
        import jax.numpy as jnp

        updates: Sequence[Update] = step.updates

        def run(tv: dict[str, list[Any]], ntv: dict[str, list[Any]], opt: list[list[Any]], *batch: Any
                ) -> tuple[Any, ...]:
            def forward(trained: tuple[tuple[list[Any], ...], ...]) -> tuple[tuple[Any, ...], Any]:
                weights = dict(tv)
                for u, per_net in zip(updates, trained):
                    weights.update(zip(u.nets, per_net))
                state = dict(ntv)

                def call(name: str, x: Any) -> Any:
                    y, state[name] = self.nets[name].stateless_call(weights[name], state[name], x, training=True)
                    return y

                scalars, outputs = step.objective(call, *batch)
                return tuple(scalars[u.loss] for u in updates), (scalars, tuple(outputs), state)

            trained = tuple(tuple(tv[k] for k in u.nets) for u in updates)
            losses, pullback, (scalars, outputs, new_ntv) = jax.vjp(forward, trained, has_aux=True)
            new_tv, new_opt = dict(tv), list(opt)
            for i, u in enumerate(updates):
                (grads,) = pullback(tuple(jnp.ones_like(x) if j == i else jnp.zeros_like(x)
                                          for j, x in enumerate(losses)))
                flat_vars = [v for per_net in trained[i] for v in per_net]
                flat_grads = [g for per_net in grads[i] for g in per_net]
                k = self._opt_index(u)
                flat_vars, new_opt[k] = u.optimizer.stateless_apply(opt[k], flat_grads, flat_vars)
                start = 0
                for name, per_net in zip(u.nets, trained[i]):
                    new_tv[name] = list(flat_vars[start:start + len(per_net)])
                    start += len(per_net)
            return new_tv, new_ntv, new_opt, scalars, outputs

        return run

    def _run(self, name: str, *batch: Any) -> tuple[dict[str, Any], tuple[Any, ...]]:
        self._tv, self._ntv, self._opt, scalars, outputs = self._compiled[name](self._tv, self._ntv, self._opt, *batch)
        return scalars, outputs
