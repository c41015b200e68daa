"""The adversarial term the generating trainers share (VAE decoder, unmasking network).

A :class:`~faceflex.models.patch_critic.PatchCritic` takes one hinge step per batch on real
versus generated images; the generator's term is the critic's hinge loss on its images plus
feature matching (L1 between the critic's feature maps of the generated and the real images),
weighted adaptively as in VQGAN: ``weight`` x |grad of the rest of the loss| / |grad of the term|,
both at the generator's last layer, so the term neither swamps nor vanishes beside the rest.
Given a ``region`` (where the generator painted), both the critic's hinge losses and the
generator's term count each patch by how much of the region (grown by 8 px) it covers (patches of untouched
pixels, the same in both images, teach the critic nothing).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from faceflex.models.patch_critic import PatchCritic
from faceflex.train.distributed import average_gradients


class AdversarialTerm:
    """Owns the critic and its optimiser; checkpointed through :meth:`state` / :meth:`load_state`."""

    def __init__(self, weight: float, lr: float, device: torch.device) -> None:
        self.weight = weight
        self.critic = PatchCritic().to(device).to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.critic.parameters(), lr=lr, betas=(0.5, 0.9))

    def __call__(
        self,
        fake: torch.Tensor,
        real: torch.Tensor,
        rest: torch.Tensor,
        last: torch.Tensor,
        logged: dict,
        region: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One critic step on (real, fake.detach()), then the generator's weighted term for ``fake``
        (``rest``: the rest of the generator's loss; ``last``: its last layer's weight; ``region``
        (N, 1, H, W) in [0, 1]: the patches are counted by their share of it)."""
        self.critic.requires_grad_(True)
        real_logits = self.critic(real)[0].float()
        if region is not None:  # grown by 8 px: a patch that sees some of the region counts
            weights = F.adaptive_avg_pool2d(F.max_pool2d(region.float(), 17, stride=1, padding=8), real_logits.shape[-2:])

        def mean(values: torch.Tensor) -> torch.Tensor:
            return values.mean() if region is None else (values * weights).sum() / weights.sum().clamp(min=1e-6)

        critic_loss = mean(torch.relu(1 - real_logits)) + mean(torch.relu(1 + self.critic(fake.detach())[0].float()))
        self.optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        average_gradients(self.critic)  # under torchrun: the critic trains on every process's batch
        self.optimizer.step()
        self.critic.requires_grad_(False)  # the generator's term must not train the critic
        with torch.no_grad():
            real_features = self.critic(real)[1]
        fake_logits, fake_features = self.critic(fake)
        matching = sum((f.float() - r.float()).abs().mean() for f, r in zip(fake_features, real_features))
        term = -mean(fake_logits.float()) + matching
        (rest_grad,) = torch.autograd.grad(rest, last, retain_graph=True)
        (term_grad,) = torch.autograd.grad(term, last, retain_graph=True)
        weight = (rest_grad.float().norm() / (term_grad.float().norm() + 1e-4)).clamp(0, 1e4).detach() * self.weight
        logged.update({"critic": critic_loss.detach(), "match": matching.detach(), "adv_w": weight})
        return weight * term

    def state(self) -> dict:
        return {"critic": self.critic.state_dict(), "critic_optimizer": self.optimizer.state_dict()}

    def load_state(self, state: dict) -> None:
        """Restore from a checkpoint's state (a checkpoint from a run without the critic: it starts afresh)."""
        if "critic" in state:
            self.critic.load_state_dict(state["critic"])
            self.optimizer.load_state_dict(state["critic_optimizer"])
