"""Full supervised fine-tuning with TRL on a CrowdSelect curated set — no glue code: the set's
``messages`` (or ``prompt``/``completion``) columns are TRL's own conversational formats.

    # a local set written by `crowdselect select` / `crowdselect demo`:
    python examples/sft_trl.py --dataset crowdselect-demo --config crowdselect-demo
    # a published one, with the paper's hyper-parameters:
    python examples/sft_trl.py --dataset me/magpie-crowdselect --config crowdselect-1k \\
        --model meta-llama/Llama-3.2-3B-Instruct --epochs 3 --lr 1e-5

Equivalent CLI: trl sft --model_name_or_path MODEL --dataset_name DATASET --dataset_config CONFIG
"""

import argparse

import datasets
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer


def build_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="Hub id or local Hub-shaped folder")
    p.add_argument("--config", required=True, help="the curated config, e.g. crowdselect-1k")
    p.add_argument("--model", default="Qwen/Qwen2.5-0.5B-Instruct", help="a causal LM id or folder (with a chat template)")
    p.add_argument("--output-dir", default="sft-out")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (-1: run the epochs)")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--grad-accum", type=int, default=2)
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--warmup-steps", type=int, default=150)
    p.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    return p.parse_args(argv)


def sft_config(args) -> SFTConfig:
    """The paper's recipe: lr 1e-5, 3 epochs, batch 1 × grad-accum 2, cosine, 150 warm-up steps, max length 2048."""
    return SFTConfig(
        output_dir=args.output_dir, num_train_epochs=args.epochs, max_steps=args.max_steps, learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=args.grad_accum,
        lr_scheduler_type="cosine", warmup_steps=args.warmup_steps, max_length=args.max_length,
        logging_steps=1, save_strategy="no", report_to="none", use_cpu=args.cpu,
    )


def main(argv=None):
    args = build_args(argv)
    train = datasets.load_dataset(args.dataset, args.config, split="train")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model)
    trainer = SFTTrainer(model=model, args=sft_config(args), train_dataset=train, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(args.output_dir)
    print(f"trained {trainer.state.global_step} steps → {args.output_dir}")


if __name__ == "__main__":
    main()
