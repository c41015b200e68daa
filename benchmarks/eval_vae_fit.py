"""Is the encoder or the decoder the limit on a face? Fit the latent itself to the face.

    python benchmarks/eval_vae_fit.py [PHOTO] [--weights data/vae.pt] [--steps 200] [--out strip.png]

Aligns the first face of PHOTO (default: the demo photo), then prints the PSNR of the VAE's
reconstruction from its encoder's mean latent, and of the decoder from a latent optimised by
gradient descent (Adam) to reproduce the face, with the latents' norms. If even the optimised
latent decodes poorly, no latent of this decoder renders the face. ``--out`` saves the aligned
face, the reconstruction and the fitted decoding side by side. Record in docs/VAE.md.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from faceflex import align_face, demo_image_path, detect_faces, load_image, load_vae, save_image
from faceflex.metrics import psnr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", nargs="?", default=str(demo_image_path()))
    parser.add_argument("--weights", default=None, help="VAE weight file (default: the shipped one)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--out", help="PNG: aligned face | reconstruction | fitted decoding")
    args = parser.parse_args()

    rgb = load_image(args.photo).rgb
    faces = detect_faces(rgb)
    if not faces:
        raise SystemExit(f"{args.photo}: no face found")
    aligned = align_face(rgb, faces[0].landmarks).image
    vae = load_vae(args.weights, device="cpu")
    encoded = torch.from_numpy(vae.encode(aligned))  # the mean latent, as every command uses it
    x = torch.from_numpy(np.array(aligned)).permute(2, 0, 1)[None].float() / 255
    for parameter in vae.model.parameters():
        parameter.requires_grad_(False)
    latent = encoded.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([latent], lr=args.lr)
    for _ in range(args.steps):
        loss = (vae.model.decode(latent) - x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    latent = latent.detach()
    with torch.no_grad():
        reconstruction, fitted = (vae.model.decode(z).clamp(0, 1) for z in (encoded, latent))
    print(f"encoder mean latent: PSNR {float(psnr(reconstruction, x)[0]):.2f} dB, latent norm {float(encoded.norm()):.1f}")
    print(f"latent fitted in {args.steps} Adam steps: PSNR {float(psnr(fitted, x)[0]):.2f} dB, latent norm {float(latent.norm()):.1f}")
    if args.out:
        row = torch.cat([x, reconstruction, fitted], dim=3)[0]
        save_image((row.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8), args.out)


if __name__ == "__main__":
    main()
