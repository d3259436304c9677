"""llama.cpp on the same GGUF, measured the way `local_bench` measures the
embedded model: load time, a 256-token prompt (best of three), 128 greedy
tokens one at a time (best of three). Uses llama-cpp-python (llama.cpp built
from source by pip, with the machine's AVX2/FMA).

    python3 llama_cpp_bench.py MODEL.gguf [THREADS]
"""
import sys, time
import numpy as np
from llama_cpp import Llama
path = sys.argv[1]
nt = int(sys.argv[2]) if len(sys.argv) > 2 else 2
t = time.time()
llm = Llama(model_path=path, n_ctx=2048, n_threads=nt, n_threads_batch=nt, n_batch=256, n_ubatch=256, verbose=False)
print("load_seconds %.3f" % (time.time() - t))
text = "The quick brown fox jumps over the lazy dog while the committee reviews the quarterly figures and plans the next release. "
toks = llm.tokenize((text * 40).encode(), add_bos=False)[:256]
best = 1e9
for _ in range(3):
    llm.reset()
    t = time.time(); llm.eval(toks); best = min(best, time.time() - t)
print("prompt_tokens_per_second %.1f" % (256 / best))
chat = llm.tokenize(b"<|im_start|>user\nWrite a long story about a lighthouse keeper.<|im_end|>\n<|im_start|>assistant\n", special=True)
best = 1e9
for _ in range(3):
    llm.reset(); llm.eval(chat)
    nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    t = time.time()
    for _ in range(128):
        llm.eval([nxt])
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    best = min(best, time.time() - t)
print("generation_tokens_per_second %.1f" % (128 / best))
