"""CLIP goldens: the BPE tokenizer against open_clip's SimpleTokenizer and transformers'
CLIPTokenizer, ComfyUI's prompt weighting and chunking, and tiny random-weight text and vision
towers (transformers CLIPTextModel / CLIPVisionModelWithProjection, open_clip's transformer)
under the LDM key names the C++ modules load."""
import json
import random
import unicodedata

import torch

from common import DATA, generator_commit, library_versions, randomize_, write_fixture

AREA = "clip"


# ---------------------------------------------------------------------------------------------
# Tokenizer


def _reference_tokenizers():
    import gzip

    import open_clip.tokenizer as oct
    from transformers import CLIPTokenizer

    simple = oct.SimpleTokenizer()
    merges = gzip.open(oct.default_bpe()).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    byte_chars = list(oct.bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    hf = CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=[tuple(m.split()) for m in merges])
    return simple, hf


def _word(rng, alphabet, lo=1, hi=9):
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def _corpus(rng):
    """(category, text) pairs covering the scripts and shapes a prompt may contain."""
    ascii_lower = "abcdefghijklmnopqrstuvwxyz"
    ascii_letters = ascii_lower + ascii_lower.upper()
    english = ("a photo of an astronaut riding a horse on the moon highly detailed digital painting "
               "trending artstation concept art smooth sharp focus illustration portrait of beautiful "
               "woman cyberpunk city at night neon lights rain reflections masterpiece best quality "
               "it's don't we're they've I'm you'll he'd Let's cat's dogs' o'clock").split()
    punct = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["...", "--", "!!", "?!", "—", "–", "…", "•", "©", "®", "°", "±"]
    accents = "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÑÒÓÔÕÖØÙÚÛÜÝœŒłŁšŠžŽčČřŘ"
    combining = ["\u0301", "\u0300", "\u0308", "\u0327", "\u0303", "\u030a", "\u0323\u0302", "\u0302\u0323"]
    cjk = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)] + [chr(c) for c in range(0x3041, 0x3097)] + \
          [chr(c) for c in range(0x30A1, 0x30FB)] + [chr(c) for c in range(0xAC00, 0xAC00 + 2000)]
    emoji = [chr(c) for c in range(0x1F300, 0x1F5FF)] + [chr(c) for c in range(0x1F600, 0x1F64F)] + \
            ["👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "☕", "✨", "🏳️‍🌈"]
    scripts = {
        "cyrillic": "абвгдежзийклмнопрстуфхцчшщъыьэюяАБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЫЭЮЯ",
        "greek": "αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΤΥΦΧΨΩ",
        "arabic": "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
        "hebrew": "אבגדהוזחטיכלמנסעפצקרשת",
        "devanagari": "कखगघङचछजझञटठडढणतथदधनपफबभमयरलवशषसहािीुूेैोौ्",
        "thai": "กขฃคฅฆงจฉชซฌญฎฏฐฑฒณดตถทธนบปผฝพฟภมยรลวศษสหฬอฮะัาำิีึืุู",
    }
    out = [("empty", ""), ("empty", " "), ("empty", "\t\n  \r\n"), ("empty", "\u3000")]
    for _ in range(500):
        words = []
        for _ in range(rng.randint(1, 14)):
            r = rng.random()
            if r < 0.5:
                w = rng.choice(english)
            elif r < 0.7:
                w = _word(rng, ascii_letters)
            elif r < 0.85:
                w = rng.choice(punct) * rng.randint(1, 3)
            else:
                w = str(rng.randint(0, 10 ** rng.randint(1, 9)))
            if rng.random() < 0.2:
                w = w.upper() if rng.random() < 0.5 else w.capitalize()
            words.append(w)
        sep = rng.choice([" ", " ", ", ", "  ", "\t", "\n", ",", ""])
        out.append(("ascii", sep.join(words)))
    for _ in range(250):
        words = [_word(rng, ascii_lower + accents) for _ in range(rng.randint(1, 8))]
        if rng.random() < 0.5:  # decomposed accents, which NFC must recompose
            words = [w + rng.choice(combining) for w in words]
        out.append(("accents", " ".join(words)))
    for _ in range(250):
        parts = [_word(rng, cjk, 1, 12) for _ in range(rng.randint(1, 5))]
        sep = rng.choice(["", " ", "、", "。", ", "])
        out.append(("cjk", sep.join(parts)))
    for _ in range(200):
        parts = []
        for _ in range(rng.randint(1, 8)):
            parts.append(rng.choice(emoji) * rng.randint(1, 3) if rng.random() < 0.6 else rng.choice(english))
        out.append(("emoji", rng.choice(["", " "]).join(parts)))
    for _ in range(200):
        out.append(("punctuation", "".join(rng.choice(punct) for _ in range(rng.randint(1, 30)))))
    for _ in range(200):
        r = rng.random()
        if r < 0.3:
            s = str(rng.randint(0, 10 ** 18))
        elif r < 0.6:
            s = f"{rng.uniform(-1000, 1000):.{rng.randint(0, 6)}f}"
        elif r < 0.8:
            s = f"{rng.randint(1, 9999)}x{rng.randint(1, 9999)} {rng.randint(1, 100)}% ${rng.randint(0, 10**6):,}"
        else:
            s = " ".join(str(rng.randint(0, 99)) + _word(rng, ascii_lower, 0, 3) for _ in range(rng.randint(1, 8)))
        out.append(("numbers", s))
    for name, alphabet in scripts.items():
        for _ in range(60):
            out.append((name, " ".join(_word(rng, alphabet) for _ in range(rng.randint(1, 8)))))
    for _ in range(60):
        words = [rng.choice(english) if rng.random() < 0.8 else rng.choice(punct) for _ in range(rng.randint(60, 250))]
        out.append(("long", " ".join(words)))
    for _ in range(10):  # one very long word: BPE over thousands of symbols
        out.append(("long_word", _word(rng, ascii_lower, 200, 2000)))
    for _ in range(150):
        parts = [rng.choice(english), _word(rng, accents), _word(rng, cjk, 1, 4), rng.choice(emoji),
                 rng.choice(punct), str(rng.randint(0, 999)), _word(rng, scripts[rng.choice(list(scripts))])]
        rng.shuffle(parts)
        out.append(("mixed", rng.choice([" ", ""]).join(parts)))
    return out


def _invalid_utf8(rng):
    """Byte strings with malformed UTF-8 (the tokenizer decodes with replacement)."""
    bad = [b"\xff", b"\xc0\xaf", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80\x80", b"\xf0\x9f\x98",
           b"\xc3", b"\xe0\x80\xaf", b"\xfe\xfe"]
    out = []
    for _ in range(60):
        pieces = []
        for _ in range(rng.randint(1, 6)):
            pieces.append(rng.choice(bad) if rng.random() < 0.5 else rng.choice(["cat", "é", "日本", " ", "🙂", "x"]).encode())
        out.append(b"".join(pieces))
    return out


# Deliberate differences between open_clip and transformers where we follow open_clip (ftfy's
# character fixes); checked against open_clip alone.
OPEN_CLIP_ONLY = [
    "\u201cquoted\u201d text", "it\u2019s a \u2018test\u2019", "\ufb01ne \ufb02ower of\ufb03ce", "\uff21\uff22\uff23 \uff11\uff12\uff13",
    "\uff48\uff45\uff4c\uff4c\uff4f\uff01", "a\u3000b", "tab\x0bvtab", "bell\x07char", "zero\u200bwidth", "bom\ufeffhere",
    "\u0132sselmeer", "\u01c4 \u01c6", "\u201ehello\u201c", "soft\u00adhyphen",
]


def _tokenizer_cases():
    simple, hf = _reference_tokenizers()
    rng = random.Random(20261126)
    cases, disagreements = [], {}

    def add(category, raw: bytes, text: str, with_context: bool, only_open_clip=False):
        ours = simple.encode(text)
        if not only_open_clip:
            theirs = hf(text, add_special_tokens=False)["input_ids"]
            if ours != theirs:
                disagreements[category] = disagreements.get(category, 0) + 1
                return
        case = {"category": category, "utf8_hex": raw.hex(), "ids": ours}
        if with_context:
            case["context77"] = simple(text)[0].tolist()
        cases.append(case)

    for i, (category, text) in enumerate(_corpus(rng)):
        add(category, text.encode("utf-8"), text, with_context=(i % 10 == 0 or category.startswith("long")))
    for raw in _invalid_utf8(rng):
        add("invalid_utf8", raw, raw.decode("utf-8", errors="replace"), with_context=True)
    for text in OPEN_CLIP_ONLY:
        add("open_clip_ftfy", text.encode("utf-8"), text, with_context=True, only_open_clip=True)
    return cases, disagreements


# ---------------------------------------------------------------------------------------------
# ComfyUI prompt weighting and chunking, re-derived independently from the behaviour documented in
# ../shared/spec/unclip-reference.md §7.2-7.3 (ComfyUI comfy/sd1_clip.py token_weights,
# tokenize_with_weights): not ComfyUI's code, checked against the hand-worked cases in the spec.


def _split_groups(text):
    """Top-level plain text and balanced '(...)' groups, with ComfyUI's handling of unbalanced
    parentheses (a ')' at depth 0 drives the depth negative and is kept as text)."""
    pieces, current, depth = [], "", 0
    for ch in text:
        if ch == "(":
            if depth == 0:
                if current:
                    pieces.append(current)
                current = "("
            else:
                current += ch
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                pieces.append(current + ")")
                current = ""
            else:
                current += ch
        else:
            current += ch
    if current:
        pieces.append(current)
    return pieces


def _finite_float(text):
    try:
        value = float(text)
    except ValueError:
        return None
    # Deliberate deviation: ComfyUI accepts nan/inf as weights; unclip treats them as text.
    return value if value == value and abs(value) != float("inf") else None


def _weighted_segments(text, weight=1.0):
    out = []
    for piece in _split_groups(text):
        if len(piece) >= 2 and piece[0] == "(" and piece[-1] == ")":
            inner = piece[1:-1]
            w = weight * 1.1
            colon = inner.rfind(":")
            if colon > 0:
                value = _finite_float(inner[colon + 1:])
                if value is not None:
                    w, inner = value, inner[:colon]
            out += _weighted_segments(inner, w)
        else:
            out.append((piece, weight))
    return out


def _comfy_chunks(hf, prompt, start=49406, end=49407, pad=0, length=77, large=8):
    escaped = prompt.replace("\\)", "\0\1").replace("\\(", "\0\2")
    groups = []
    for segment, weight in _weighted_segments(escaped):
        segment = segment.replace("\0\1", ")").replace("\0\2", "(")
        import re
        parts = re.split(" embedding:|\nembedding:", segment)
        parts = [parts[0]] + ["embedding:" + p for p in parts[1:]]
        for part in parts:
            if part:
                groups.append([(t, weight) for t in hf(part, add_special_tokens=False)["input_ids"]])
    chunks, chunk = [], [(start, 1.0)]
    chunks.append(chunk)
    for group in groups:
        is_large = len(group) >= large
        while group:
            if len(group) + len(chunk) > length - 1:
                room = length - len(chunk) - 1
                if is_large:
                    chunk.extend(group[:room])
                    chunk.append((end, 1.0))
                    group = group[room:]
                else:
                    chunk.append((end, 1.0))
                    chunk.extend([(pad, 1.0)] * room)
                chunk = [(start, 1.0)]
                chunks.append(chunk)
            else:
                chunk.extend(group)
                group = []
    chunk.append((end, 1.0))
    chunk.extend([(pad, 1.0)] * (length - len(chunk)))
    return chunks


PROMPTS = [
    "", "a cat", "a (cat) on a mat", "a ((cat)) on a mat", "(a cat:1.5)", "((a cat:1.5))", "(a (cat:0.5) dog:1.3)",
    "a \\(cat\\) on a mat", "\\((cat)\\)", "a (cat", "a cat)", "a) (b (c:1.2) d", ")))(((x", "(cat:abc)",
    "(cat:)", "(:1.3)", "(cat:nan)", "(cat:inf)", "(cat: 1.25 )", "(cat:1e-1)", "(cat:-0.5)", "(cat:1_0)",
    "(a:b:0.7)", "(red:1.2) [blue] {green}", "() (()) (:)", "a photo embedding:foo bar", "x\nembedding:y (z:1.4)",
    "(ünïcödé (日本:1.3):0.8) 🙂", "bad \xff utf8 (w:1.1)", "(((((((deep)))))))",
    " ".join(["word"] * 80), " ".join(["(word:1.1)"] * 80),
    "longwordlongwordlongwordlongwordlongwordlongword " * 20,
    " ".join(f"(term{i}:{1 + i % 5 / 10})" for i in range(60)),
    "a " * 74 + "(supercalifragilisticexpialidocious:1.2) end",
    "a " * 70 + "(one two three four five six seven eight nine ten)",
    "a " * 73 + "(tiny group)",
]


def _prompt_cases():
    _, hf = _reference_tokenizers()
    rng = random.Random(77)
    words = "cat dog (red:1.3) ((blue)) [green] mountain, sky; \\(x\\) 日本 🙂 supercalifragilistic embedding:z".split()
    prompts = list(PROMPTS)
    for _ in range(40):
        prompts.append(" ".join(rng.choice(words) for _ in range(rng.randint(1, 120))))
    prompts.append("(" + "word " * 2000 + ":1.2)")  # 2,000 tokens in one weighted group
    cases = []
    for p in prompts:
        chunks = _comfy_chunks(hf, p.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
                               if isinstance(p, bytes) else p)
        cases.append({"utf8_hex": p.encode("utf-8", errors="replace").hex(),
                      "ids": [t for c in chunks for t, _ in c],
                      "weights": [w for c in chunks for _, w in c]})
    return cases


def _small_vocabulary_cases():
    """A transformers-format vocab.json + merges.txt holding only the first merges of the CLIP
    vocabulary (small enough to ship), and what transformers' CLIPTokenizer makes of some text
    with it: the C++ reader of these files is checked against that."""
    import gzip

    import open_clip.tokenizer as oct
    from transformers import CLIPTokenizer

    merges = gzip.open(oct.default_bpe()).read().decode("utf-8").split("\n")[1:1 + 3000]
    byte_chars = list(oct.bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {}
    for t in tokens:
        vocab.setdefault(t, len(vocab))
    folder = DATA / AREA / "tokenizer_small"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    hf = CLIPTokenizer(vocab=vocab, merges=[tuple(m.split()) for m in merges])
    texts = ["a photo of an astronaut riding a horse", "Hello, World! 123", "déjà vu 日本語 🙂",
             "the quick brown fox jumps over the lazy dog's back", ""]
    return [{"utf8_hex": t.encode().hex(), "ids": hf(t, add_special_tokens=False)["input_ids"]} for t in texts]


def generate_tokenizer() -> None:
    small = _small_vocabulary_cases()
    cases, disagreements = _tokenizer_cases()
    prompts = _prompt_cases()
    counts = {}
    for c in cases:
        counts[c["category"]] = counts.get(c["category"], 0) + 1
    doc = {
        "reference": "open_clip.tokenizer.SimpleTokenizer.encode and transformers CLIPTokenizer (kept only where "
                     "both agree, except category open_clip_ftfy); prompts: ComfyUI weighting/chunking re-derived",
        "generator_commit": generator_commit(),
        "libraries": library_versions(),
        "unicode": unicodedata.unidata_version,
        "counts": counts,
        "dropped_disagreements": disagreements,
        "cases": cases,
        "prompts": prompts,
        "small_vocabulary": small,
    }
    path = DATA / AREA / "tokenizer_golden.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, separators=(",", ":"), ensure_ascii=True))
    print(f"wrote {path} ({path.stat().st_size} bytes): {len(cases)} strings {counts}, "
          f"dropped {disagreements}, {len(prompts)} prompts")


# ---------------------------------------------------------------------------------------------
# Text and vision towers


def _hf_layers_to_ldm(sd, hf_prefix, ldm_prefix, layers):
    out = {}
    for i in range(layers):
        h, l = f"{hf_prefix}encoder.layers.{i}.", f"{ldm_prefix}transformer.resblocks.{i}."
        out[l + "ln_1.weight"], out[l + "ln_1.bias"] = sd[h + "layer_norm1.weight"], sd[h + "layer_norm1.bias"]
        out[l + "ln_2.weight"], out[l + "ln_2.bias"] = sd[h + "layer_norm2.weight"], sd[h + "layer_norm2.bias"]
        out[l + "attn.in_proj_weight"] = torch.cat([sd[h + f"self_attn.{n}_proj.weight"] for n in "qkv"])
        out[l + "attn.in_proj_bias"] = torch.cat([sd[h + f"self_attn.{n}_proj.bias"] for n in "qkv"])
        out[l + "attn.out_proj.weight"] = sd[h + "self_attn.out_proj.weight"]
        out[l + "attn.out_proj.bias"] = sd[h + "self_attn.out_proj.bias"]
        for hf_name, ldm_name in (("fc1", "c_fc"), ("fc2", "c_proj")):
            out[l + f"mlp.{ldm_name}.weight"] = sd[h + f"mlp.{hf_name}.weight"]
            out[l + f"mlp.{ldm_name}.bias"] = sd[h + f"mlp.{hf_name}.bias"]
    return out


def hf_text_to_ldm(sd, layers, prefix="model."):
    """transformers CLIPTextModelWithProjection -> LDM cond_stage_model.model.* names (spec 2.4.3)."""
    out = {
        prefix + "token_embedding.weight": sd["text_model.embeddings.token_embedding.weight"],
        prefix + "positional_embedding": sd["text_model.embeddings.position_embedding.weight"],
        prefix + "ln_final.weight": sd["text_model.final_layer_norm.weight"],
        prefix + "ln_final.bias": sd["text_model.final_layer_norm.bias"],
        prefix + "text_projection": sd["text_projection.weight"].t(),
    }
    out.update(_hf_layers_to_ldm(sd, "text_model.", prefix, layers))
    return out


def hf_vision_to_ldm(sd, layers, prefix="visual."):
    """transformers CLIPVisionModelWithProjection -> LDM embedder.model.visual.* names (spec 2.4.4)."""
    v = "vision_model."
    out = {
        prefix + "class_embedding": sd[v + "embeddings.class_embedding"],
        prefix + "conv1.weight": sd[v + "embeddings.patch_embedding.weight"],
        prefix + "positional_embedding": sd[v + "embeddings.position_embedding.weight"],
        prefix + "ln_pre.weight": sd[v + "pre_layrnorm.weight"],
        prefix + "ln_pre.bias": sd[v + "pre_layrnorm.bias"],
        prefix + "ln_post.weight": sd[v + "post_layernorm.weight"],
        prefix + "ln_post.bias": sd[v + "post_layernorm.bias"],
        prefix + "proj": sd["visual_projection.weight"].t(),
    }
    out.update(_hf_layers_to_ldm(sd, v, prefix, layers))
    return out


VOCAB, START, END = 600, 598, 599  # a small vocabulary whose end id is also the largest id


def _text_tokens(gen):
    """Batch 2: a short prompt padded with zeros, and a full-length one (no padding)."""
    short = [START, 17, 254, 3, 88, END] + [0] * 71
    full = [START] + torch.randint(1, START, (75,), generator=gen).tolist() + [END]
    return torch.tensor([short, full], dtype=torch.long)


def _text_open_clip(seed):
    from open_clip.transformer import TextTransformer

    torch.manual_seed(seed)
    cfg = dict(vocab=VOCAB, context=77, width=48, heads=4, layers=3, mlp_hidden=192, embed_dim=32, end_id=END,
               activation="gelu", eps=1e-5)
    model = TextTransformer(context_length=77, vocab_size=VOCAB, width=48, heads=4, layers=3, mlp_ratio=4.0,
                            output_dim=32, pool_type="argmax").eval()
    randomize_(model)
    tokens = _text_tokens(torch.Generator().manual_seed(seed))
    with torch.no_grad():
        pooled = model(tokens)
        # LDM FrozenOpenCLIPEmbedder (layer "penultimate"): every block but the last, then ln_final.
        x = model.token_embedding(tokens) + model.positional_embedding
        for block in model.transformer.resblocks[:-1]:
            x = block(x, attn_mask=model.attn_mask)
        hidden = model.ln_final(x)
        last = model.ln_final(model.transformer.resblocks[-1](x, attn_mask=model.attn_mask))
    tensors = {f"model.{k}": v for k, v in model.state_dict().items() if k != "attn_mask"}
    tensors.update({"tokens": tokens.float(), "hidden": hidden, "hidden_last": last, "pooled": pooled})
    write_fixture(AREA, "text_open_clip", tensors, seed=seed, config=cfg,
                  note="open_clip.transformer.TextTransformer; hidden = ln_final(blocks[:-1]), pooled = forward()")


def _text_transformers(seed):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    conf = CLIPTextConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=128, num_hidden_layers=3,
                          num_attention_heads=2, max_position_embeddings=77, hidden_act="gelu", projection_dim=24,
                          layer_norm_eps=1e-5, bos_token_id=START, eos_token_id=END, pad_token_id=0,
                          attn_implementation="eager")
    model = CLIPTextModelWithProjection(conf).eval()
    randomize_(model)
    tokens = _text_tokens(torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = model(input_ids=tokens, output_hidden_states=True)
        hidden = model.text_model.final_layer_norm(out.hidden_states[-2])
    cfg = dict(vocab=VOCAB, context=77, width=32, heads=2, layers=3, mlp_hidden=128, embed_dim=24, end_id=END,
               activation="gelu", eps=1e-5)
    tensors = hf_text_to_ldm(model.state_dict(), 3)
    tensors.update({"tokens": tokens.float(), "hidden": hidden, "hidden_last": out.last_hidden_state,
                    "pooled": out.text_embeds})
    write_fixture(AREA, "text_transformers", tensors, seed=seed, config=cfg,
                  note="transformers CLIPTextModelWithProjection; hidden = final_layer_norm(hidden_states[-2])")


def _vision_transformers(case, seed, width, heads, act):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    conf = CLIPVisionConfig(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=2,
                            num_attention_heads=heads, image_size=56, patch_size=14, hidden_act=act,
                            projection_dim=24, layer_norm_eps=1e-5, attn_implementation="eager")
    model = CLIPVisionModelWithProjection(conf).eval()
    randomize_(model)
    pixels = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        embeds = model(pixel_values=pixels).image_embeds
    cfg = dict(image_size=56, patch=14, width=width, heads=heads, layers=2, mlp_hidden=4 * width, embed_dim=24,
               activation=act, eps=1e-5)
    tensors = hf_vision_to_ldm(model.state_dict(), 2)
    tensors.update({"pixels": pixels, "image_embeds": embeds})
    write_fixture(AREA, case, tensors, seed=seed, config=cfg,
                  note="transformers CLIPVisionModelWithProjection image_embeds")


def _vision_open_clip(seed):
    from open_clip.transformer import VisionTransformer

    torch.manual_seed(seed)
    model = VisionTransformer(image_size=56, patch_size=14, width=48, layers=2, heads=4, mlp_ratio=4.0,
                              output_dim=24).eval()
    randomize_(model)
    pixels = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        embeds = model(pixels)
    cfg = dict(image_size=56, patch=14, width=48, heads=4, layers=2, mlp_hidden=192, embed_dim=24,
               activation="gelu", eps=1e-5)
    tensors = {f"visual.{k}": v for k, v in model.state_dict().items()}
    tensors.update({"pixels": pixels, "image_embeds": embeds})
    write_fixture(AREA, "vision_open_clip", tensors, seed=seed, config=cfg,
                  note="open_clip.transformer.VisionTransformer forward (class token, ln_post, @ proj)")


def _prompt_weighting(seed):
    """ComfyUI encode_token_weights (spec 7.2) on the tiny open_clip text tower: two chunks with
    per-token weights, encoded in one batch with the empty prompt, mixed as
    empty + (z - empty) * w and concatenated along the tokens."""
    from open_clip.transformer import TextTransformer

    torch.manual_seed(seed)
    model = TextTransformer(context_length=77, vocab_size=VOCAB, width=32, heads=2, layers=2, mlp_ratio=4.0,
                            output_dim=16, pool_type="argmax").eval()
    randomize_(model)
    gen = torch.Generator().manual_seed(seed)
    chunks = _text_tokens(gen)
    weights = torch.ones(2, 77, dtype=torch.float64)
    weights[0, 1:3] = 1.1
    weights[0, 3] = 1.1 * 1.1
    weights[1, 10:40] = 0.5
    weights[1, 50] = 1.7
    empty = torch.tensor([[START, END] + [0] * 75])
    with torch.no_grad():
        x = model.token_embedding(torch.cat([chunks, empty])) + model.positional_embedding
        for block in model.transformer.resblocks[:-1]:
            x = block(x, attn_mask=model.attn_mask)
        z = model.ln_final(x)
        pooled = model(torch.cat([chunks, empty]))[0:1]
    out = z[:2].clone()
    for k in range(2):
        for j in range(77):
            w = float(weights[k, j])
            if w != 1.0:
                out[k, j] = (z[k, j] - z[2, j]) * w + z[2, j]
    cfg = dict(vocab=VOCAB, context=77, width=32, heads=2, layers=2, mlp_hidden=128, embed_dim=16, end_id=END,
               activation="gelu", eps=1e-5)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items() if k != "attn_mask"}
    tensors.update({"tokens": chunks.float(), "weights": weights.float(), "cond": out.reshape(1, 154, 32),
                    "cond_unweighted": z[:2].reshape(1, 154, 32), "pooled": pooled})
    write_fixture(AREA, "prompt_weighting", tensors, seed=seed, config=cfg,
                  note="ComfyUI encode_token_weights re-derived on open_clip TextTransformer (penultimate + ln_final)")


def generate_models() -> None:
    _prompt_weighting(36)
    _text_open_clip(31)
    _text_transformers(32)
    _vision_transformers("vision_transformers_gelu", 33, 48, 4, "gelu")
    _vision_transformers("vision_transformers_quick_gelu", 34, 32, 2, "quick_gelu")
    _vision_open_clip(35)


# ---------------------------------------------------------------------------------------------
# Image preprocessing

MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]

# name, height, width, PIL mode, output size: odd-sized, non-square, RGBA, greyscale, exact-size
# (no resize), 1x1, extreme aspect, down- and up-scaling.
IMAGES = [
    ("rgb_37x23", 37, 23, "RGB", 32),
    ("rgba_23x37", 23, 37, "RGBA", 32),
    ("grey_50x50", 50, 50, "L", 32),
    ("grey_alpha_19x45", 19, 45, "LA", 40),
    ("rgb_97x61", 97, 61, "RGB", 32),
    ("rgb_exact_32", 32, 32, "RGB", 32),
    ("rgb_1x1", 1, 1, "RGB", 32),
    ("rgb_5x300", 5, 300, "RGB", 32),
    ("rgb_160x120", 120, 160, "RGB", 40),
]


def _comfyui_clip_preprocess(rgb_u8, size, crop):
    """ComfyUI comfy/clip_vision.py clip_preprocess on LoadImage's float image, re-derived from
    spec 4.1 with the same torch calls (interpolate bicubic antialias, crop, 1/255 rounding)."""
    import numpy as np

    image = torch.from_numpy(rgb_u8.astype(np.float32) / 255.0)[None]  # [1, H, W, 3], LoadImage
    mean, std = torch.tensor(MEAN), torch.tensor(STD)
    image = image.movedim(-1, 1)
    if not (image.shape[2] == size and image.shape[3] == size):
        if crop:
            scale = size / min(image.shape[2], image.shape[3])
            scale_size = (round(scale * image.shape[2]), round(scale * image.shape[3]))
        else:
            scale_size = (size, size)
        image = torch.nn.functional.interpolate(image, size=scale_size, mode="bicubic", antialias=True)
        h, w = (image.shape[2] - size) // 2, (image.shape[3] - size) // 2
        image = image[:, :, h:h + size, w:w + size]
    image = torch.clip(255.0 * image, 0, 255).round() / 255.0
    return (image - mean.view(3, 1, 1)) / std.view(3, 1, 1)


def generate_preprocess() -> None:
    import numpy as np
    from PIL import Image
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    rng = np.random.default_rng(2024)
    tensors, names = {}, []
    for name, h, w, mode, size in IMAGES:
        channels = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2}[mode]
        # Smooth gradients plus noise: resampling errors show, and every byte value occurs.
        yy, xx = np.mgrid[0:h, 0:w]
        base = (np.sin(xx[..., None] * 0.3 + np.arange(channels)) + np.cos(yy[..., None] * 0.2)) * 60 + 128
        pixels = np.clip(base + rng.normal(0, 40, (h, w, channels)), 0, 255).astype(np.uint8)
        pil = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode=mode)
        rgb = np.array(pil.convert("RGB"))
        processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        diffusers = torch.from_numpy(np.asarray(processor(images=pil, return_tensors="np")["pixel_values"]))
        tensors[f"{name}.pixels"] = torch.from_numpy(pixels.astype(np.float32))
        tensors[f"{name}.comfyui"] = _comfyui_clip_preprocess(rgb, size, True)
        tensors[f"{name}.comfyui_stretch"] = _comfyui_clip_preprocess(rgb, size, False)
        tensors[f"{name}.diffusers"] = diffusers
        names.append({"name": name, "size": size})
    write_fixture(AREA, "preprocess", tensors, seed=2024, config={"cases": names},
                  note="ComfyUI clip_preprocess (re-derived with torch) and transformers CLIPImageProcessorPil")


def generate() -> None:
    generate_tokenizer()
    generate_models()
    generate_preprocess()
