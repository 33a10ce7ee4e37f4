r"""What the weight-decay axis means: the ways :math:`\lambda` acts on the weights :math:`X`, the values of
the ``weight_decay_mode`` switch (:mod:`optbench.spec.switches`) and of an external optimizer's block
(:mod:`optbench.spec.external`).

- ``decoupled``: :math:`X \mathrel{-}= \eta_t \lambda X`, the AdamW paper's (:math:`\eta_t` the schedule's
  multiplier), so that :math:`\lambda` does not scale with the learning rate;
- ``torch``: :math:`X \mathrel{-}= \mathrm{lr}_t \lambda X`, as ``torch.optim.AdamW`` and most optimizer
  libraries, so that the decay per step is the product of the two axes;
- ``l2``: :math:`G \mathrel{+}= \lambda X`, an L2 penalty in the gradient (Adam with L2).
"""

#: Each mode and how lambda acts in it, in the order of the switch's choices.
DECAY_MODES = {
    "decoupled": "X -= eta_t lambda X (decoupled, AdamW)",
    "torch": "X -= lr_t lambda X (torch)",
    "l2": "G += lambda X (l2)",
}
MEANING = "how lambda acts: " + ", ".join(DECAY_MODES.values())


def axis_label(mode: str, normalized: bool) -> str:
    """The weight-decay axis's label in figures: ``weight decay`` (``normalized weight decay``), with
    what a step applies on a second line where that is not the paper's eta_t lambda (mode ``torch``: lr_t x
    lambda per step)."""
    label = "normalized weight decay" if normalized else "weight decay"
    return f"{label}\n(torch: lr_t x lambda per step)" if mode == "torch" else label
