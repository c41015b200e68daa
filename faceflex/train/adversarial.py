"""The adversarial term the generating trainers share (VAE decoder, unmasking network).

A :class:`~faceflex.models.patch_critic.PatchCritic` takes one hinge step per batch on real
versus generated images; the generator's term is the critic's hinge loss on its images plus
feature matching (L1 between the critic's feature maps of the generated and the real images),
weighted adaptively as in VQGAN: ``weight`` x |grad of the rest of the loss| / |grad of the term|,
both at the generator's last layer, so the term neither swamps nor vanishes beside the rest.
"""

from __future__ import annotations

import torch

from faceflex.models.patch_critic import PatchCritic
from faceflex.train.distributed import average_gradients


class AdversarialTerm:
    """Owns the critic and its optimiser; checkpointed through :meth:`state` / :meth:`load_state`."""

    def __init__(self, weight: float, lr: float, device: torch.device) -> None:
        self.weight = weight
        self.critic = PatchCritic().to(device).to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.critic.parameters(), lr=lr, betas=(0.5, 0.9))

    def __call__(self, fake: torch.Tensor, real: torch.Tensor, rest: torch.Tensor, last: torch.Tensor, logged: dict) -> torch.Tensor:
        """One critic step on (real, fake.detach()), then the generator's weighted term for ``fake``
        (``rest``: the rest of the generator's loss; ``last``: its last layer's weight)."""
        self.critic.requires_grad_(True)
        critic_loss = torch.relu(1 - self.critic(real)[0].float()).mean() + torch.relu(1 + self.critic(fake.detach())[0].float()).mean()
        self.optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        average_gradients(self.critic)  # under torchrun: the critic trains on every process's batch
        self.optimizer.step()
        self.critic.requires_grad_(False)  # the generator's term must not train the critic
        with torch.no_grad():
            real_features = self.critic(real)[1]
        fake_logits, fake_features = self.critic(fake)
        matching = sum((f.float() - r.float()).abs().mean() for f, r in zip(fake_features, real_features))
        term = -fake_logits.float().mean() + matching
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
