"""fp32 against bf16 autocast on this CPU: MiniLM forward + backward throughput.

    python benchmarks/cpu_precision.py [--batch-size 16] [--length 128] [--steps 4]

Prints the CPU flags that decide bf16 speed, what criteria's ``precision = "auto"`` picks here,
and samples/s of each precision measured in one run (compare them as a ratio). To see what a CPU
without native bf16 does on a machine that has it, cap the instruction sets:
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/cpu_precision.py``.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()

    from criteria import hardware
    from criteria.engine.model_source import embedded_model_path
    from transformers import AutoModel

    torch.set_num_threads(hardware.usable_cores())
    native = hardware.cpu_bf16_support()
    print(f"cpu flags: {' '.join(hardware.cpu_flags(('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16'))) or 'none'}; "
          f"{torch.get_num_threads()} threads; native bf16: {native}")
    model = AutoModel.from_pretrained(embedded_model_path())
    ids = torch.randint(1000, 20000, (args.batch_size, args.length))
    mask = torch.ones_like(ids)
    results = {}
    for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        def step() -> None:
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                out = model(input_ids=ids, attention_mask=mask).last_hidden_state
            out.float().pow(2).mean().backward()
            model.zero_grad(set_to_none=True)

        step()  # warm up: kernels chosen, memory allocated
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        results[precision] = args.steps * args.batch_size / (time.perf_counter() - start)
        print(f"{precision}: {results[precision]:.1f} samples/s")
    print(f"bf16 / fp32 throughput: {results['bf16'] / results['fp32']:.2f}x")


if __name__ == "__main__":
    main()
