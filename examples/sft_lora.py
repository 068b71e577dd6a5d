"""LoRA fine-tuning with TRL + PEFT on a CrowdSelect curated set (``pip install 'crowdselect-hf[train]'``).

    python examples/sft_lora.py --dataset crowdselect-demo --config crowdselect-demo
    python examples/sft_lora.py --dataset me/magpie-crowdselect --config crowdselect-1k \\
        --model Qwen/Qwen2.5-3B-Instruct --lora-r 16
"""

import datasets
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTTrainer

from sft_trl import build_args, sft_config


def main(argv=None):
    import argparse

    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--lora-r", type=int, default=16)
    extra.add_argument("--lora-alpha", type=int, default=32)
    extra.add_argument("--lora-dropout", type=float, default=0.05)
    lora_args, rest = extra.parse_known_args(argv)
    args = build_args(rest)
    train = datasets.load_dataset(args.dataset, args.config, split="train")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model)
    peft_config = LoraConfig(r=lora_args.lora_r, lora_alpha=lora_args.lora_alpha, lora_dropout=lora_args.lora_dropout,
                             target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=sft_config(args), train_dataset=train, processing_class=tokenizer,
                         peft_config=peft_config)
    trainer.model.print_trainable_parameters()
    trainer.train()
    trainer.save_model(args.output_dir)  # the adapter only
    print(f"trained {trainer.state.global_step} steps → {args.output_dir}")


if __name__ == "__main__":
    main()
