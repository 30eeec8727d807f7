"""PyTorch counterpart of bench_clip.cpp: transformers' CLIPTextModelWithProjection and
CLIPVisionModelWithProjection at OpenCLIP ViT-H/14 sizes with random weights, fp32 on the CPU,
the same threads and repeats. The text run also returns the hidden states (ComfyUI reads the
penultimate one). Median wall time after a warm-up."""
import argparse

import torch

from bench_timing import median_seconds
from transformers import (CLIPTextConfig, CLIPTextModelWithProjection, CLIPVisionConfig,
                          CLIPVisionModelWithProjection)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=["text", "vision"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, median of {args.repeats}")
    with torch.inference_mode():
        if args.only in (None, "text"):
            conf = CLIPTextConfig(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                  num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu",
                                  projection_dim=1024, eos_token_id=49407, bos_token_id=49406, pad_token_id=0)
            model = CLIPTextModelWithProjection(conf).eval()
            ids = torch.randint(1, 49406, (1, 77))
            ids[0, 0], ids[0, 12], ids[0, 13:] = 49406, 49407, 0
            s = median_seconds(args.repeats, lambda: model(input_ids=ids, output_hidden_states=True))
            print(f"{'text ViT-H/14, 1x77 tokens, 24 blocks + pooled':44} {s:10.3f}")
            del model
        if args.only in (None, "vision"):
            conf = CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                                    num_attention_heads=16, image_size=224, patch_size=14, hidden_act="gelu",
                                    projection_dim=1024)
            model = CLIPVisionModelWithProjection(conf).eval()
            pixels = torch.randn(1, 3, 224, 224)
            s = median_seconds(args.repeats, lambda: model(pixel_values=pixels))
            print(f"{'vision ViT-H/14, 1x3x224x224, 32 blocks':44} {s:10.3f}")


if __name__ == "__main__":
    main()
