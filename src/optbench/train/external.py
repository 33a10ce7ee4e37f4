r"""An external optimizer (any ``torch.optim.Optimizer`` class, :mod:`optbench.spec.external`) driving the
runs of one stack, stacked or one model.

**Stacking.** K stacked models hold each parameter as one ``(K, ...)`` tensor (:class:`StackedModels`).
:class:`External` builds the class over K param groups, group k holding model k's parameters as leaf
tensors of their own that are views of the stacked ones (:meth:`StackedModels.model_params`), with run k's
learning rate and weight decay. After the stacked backward pass, each leaf's gradient is set to the view
``p.grad[k]`` of the stacked gradient, and the class steps: what it writes into a leaf in place, it writes
into the stacked tensor. Model k's parameters, gradients, state and hyperparameters are those of a single
run of model k, so training stacked is training one at a time, for any class whose param groups step
independently (torch's optimizers, and every one in the ``zoo`` preset). A class that couples its groups (a
global gradient norm, say) sets ``stack: false`` and its runs train one after another.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optbench.spec.external import ExternalOptimizerSpec
from optbench.spec.run import RunSpec
from optbench.train.optimizer_class import keywords, load_class
from optbench.train.stacking import SingleModel, StackedModels


class External:
    """The class of ``spec`` over the models of ``specs``' runs, one param group per run with its lr and weight
    decay under the keywords of the grid's axes; steps and is saved as a ``torch.optim.Optimizer`` would be.

    ``update_rms`` is None: only this project's optimizer reports RMS(U). ``train()`` and ``eval()`` call the
    class's own, where it has them (Schedule-Free's: its parameters at the evaluation point in eval mode).
    """

    update_rms = None

    def __init__(self, spec: ExternalOptimizerSpec, specs: Sequence[RunSpec], models: SingleModel | StackedModels):
        """Builds the class over one param group per model of ``models``."""
        lr_key, decay_key = spec.axes["lr"], spec.axes["weight_decay"]
        self.leaves = models.model_params()
        self.stacked = models.params if isinstance(models, StackedModels) else None
        groups = [{"params": p, lr_key: s.lr, decay_key: s.weight_decay} for p, s in zip(self.leaves, specs)]
        self.inner = load_class(spec.class_path)(groups, **keywords(spec, specs[0].lr, specs[0].weight_decay))

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.inner.param_groups

    @property
    def state(self) -> dict:
        return self.inner.state

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drops the gradients, the stacked ones included."""
        self.inner.zero_grad(set_to_none=set_to_none)
        for p in self.stacked or ():
            p.grad = None

    def step(self, report_update_rms: bool = False) -> None:
        """One step of every model: the stacked gradients shared out to the models' leaves, then the class's
        step. ``report_update_rms`` is ignored (:attr:`update_rms`)."""
        if self.stacked is not None:
            for k, leaves in enumerate(self.leaves):
                for leaf, p in zip(leaves, self.stacked):
                    leaf.grad = p.grad[k]
        self.inner.step()

    def train(self) -> None:
        """The class's training mode, where it has one."""
        if callable(getattr(self.inner, "train", None)):
            self.inner.train()

    def eval(self) -> None:
        """The class's evaluation mode, where it has one."""
        if callable(getattr(self.inner, "eval", None)):
            self.inner.eval()

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)


def optimizer_mode(opt: Any, training: bool) -> None:
    """Puts ``opt`` in training or evaluation mode where it has modes (an :class:`External`); else nothing."""
    if isinstance(opt, External) and training:
        opt.train()
    elif isinstance(opt, External):
        opt.eval()


def stacks(spec: RunSpec) -> bool:
    """Whether ``spec``'s optimizer lets its runs train stacked: this project's always, an external one unless
    its block says ``stack: false``."""
    return not isinstance(spec.optimizer, ExternalOptimizerSpec) or spec.optimizer.stack
