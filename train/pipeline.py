"""``python -m train fit``: real data -> larq training -> every export -> report.json."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np

from edge_rbmlp import datasets
from edge_rbmlp.arch import Architecture
from edge_rbmlp.inputs import InputSpec
from edge_rbmlp.text import TOKENIZER, build_vocabulary, tokenize

from .tf_setup import import_tf, set_seed, versions

tf, lq = import_tf()


@dataclass
class FitConfig:
    dataset: str
    arch: Architecture
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.001
    dropout: float = 0.05
    seed: int = 0
    vocab_size: int = 10000
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None
    name: Optional[str] = None
    lce: bool = True
    int8: bool = True
    verbose: int = 2
    command: str = ""
    lr_schedule: str = "constant"  # or "cosine" (decays to 0 over all training steps)
    optimizer: str = "adam"  # or "bop": larq's Bop for the binary kernels, Adam (lr, lr_schedule) for the rest
    recalibrate_bn: int = 0  # >0: recompute BN moving statistics on this many train samples after training
    # training augmentation (train/augment.py); "none" is the paper's method and the default
    augment: str = "none"  # none | digits | digits+photo | photo | text
    augment_fraction: float = 0.5  # share of each epoch's samples that is augmented (digits, text)
    photo_fraction: float = 0.1  # share of the train set also rendered as synthetic photos, added to every epoch
    printed_fraction: float = 0.0  # MNIST: printed/display digits (train.augment.printed_digits) added, share of n
    display_share: float = 0.3  # share of those that are display digits (seven-segment, dot matrix)
    printed_redraw: int = 0  # redraw a printed digit the device would refuse up to this many times


@dataclass
class Data:
    dataset: str
    spec: InputSpec
    labels: List[str]
    output_activation: str
    q_train: np.ndarray
    y_train: np.ndarray
    q_test: np.ndarray
    y_test: np.ndarray
    vocab: Optional[List[str]] = None
    test_texts: Optional[List[str]] = None
    train_texts: Optional[List[str]] = None
    provenance: dict = field(default_factory=dict)

    @property
    def n_outputs(self) -> int:
        return 1 if self.output_activation == "sigmoid" else len(self.labels)

    def x(self, q: np.ndarray) -> np.ndarray:
        return self.spec.dequantize(q)


def encode_multi_hot(token_lists: List[List[str]], vocab: List[str]) -> np.ndarray:
    """The training path's vectorized multi-hot encoding of pre-tokenized documents.

    Must equal :meth:`edge_rbmlp.text.TextEncoder.multi_hot_batch` (tested on real reviews)."""
    index = {w: i for i, w in enumerate(vocab)}
    rows, cols = [], []
    for r, tokens in enumerate(token_lists):
        idx = [index[t] for t in tokens if t in index]
        rows.extend([r] * len(idx))
        cols.extend(idx)
    out = np.zeros((len(token_lists), len(vocab)), dtype=np.uint8)
    out[np.asarray(rows, np.int64), np.asarray(cols, np.int64)] = 1
    return out


def _subset(x, y, limit):
    if limit is None:
        return x, y
    return datasets.even_subset(x, y, limit)


def load_data(cfg: FitConfig) -> Data:
    from .data import provenance

    if cfg.dataset == "mnist":
        xi, yi = datasets.load_mnist("train")
        xt, yt = datasets.load_mnist("test")
        xi, yi = _subset(xi.reshape(len(xi), -1), yi, cfg.limit_train)
        xt, yt = _subset(xt.reshape(len(xt), -1), yt, cfg.limit_test)
        return Data("mnist", InputSpec.image(28, 28), list(datasets.MNIST_LABELS), "softmax", xi, yi, xt, yt,
                    provenance=provenance("mnist"))
    if cfg.dataset == "cifar10":
        xi, yi = datasets.load_cifar10("train")
        xt, yt = datasets.load_cifar10("test")
        xi, yi = _subset(xi.reshape(len(xi), -1), yi, cfg.limit_train)
        xt, yt = _subset(xt.reshape(len(xt), -1), yt, cfg.limit_test)
        spec = InputSpec.vector(32 * 32 * 3, scale=1.0 / 255.0, zero_point=0, binarize_threshold=128)
        return Data("cifar10", spec, list(datasets.CIFAR10_LABELS), "softmax", xi, yi, xt, yt,
                    provenance=provenance("cifar10"))
    texts_train, yi = datasets.load_imdb_reviews("train")
    texts_test, yt = datasets.load_imdb_reviews("test")
    texts_train, yi = _subset(texts_train, yi, cfg.limit_train)
    texts_test, yt = _subset(texts_test, yt, cfg.limit_test)
    vocab = build_vocabulary(texts_train, cfg.vocab_size)  # train split only
    xi = encode_multi_hot([tokenize(t) for t in texts_train], vocab)
    xt = encode_multi_hot([tokenize(t) for t in texts_test], vocab)
    spec = InputSpec.text(len(vocab), TOKENIZER)
    return Data("imdb", spec, list(datasets.IMDB_LABELS), "sigmoid", xi, yi, xt, yt, vocab=vocab,
                test_texts=texts_test, train_texts=list(texts_train), provenance=provenance("imdb"))


def make_dataset(data: Data, q: np.ndarray, y: np.ndarray, batch_size: int, seed: int, shuffle: bool):
    spec = data.spec
    y = y.astype(np.float32 if data.output_activation == "sigmoid" else np.int64)
    ds = tf.data.Dataset.from_tensor_slices((q, y))
    if shuffle:
        ds = ds.shuffle(len(q), seed=seed, reshuffle_each_iteration=True)
    scale, zp = np.float32(spec.scale), np.float32(spec.zero_point)

    def dequant(qb, yb):
        return scale * (tf.cast(qb, tf.float32) - zp), yb

    return ds.batch(batch_size).map(dequant).prefetch(2)


def predicted_class(outputs: np.ndarray, activation: str) -> np.ndarray:
    outputs = np.asarray(outputs)
    if activation == "sigmoid":
        return (outputs.reshape(len(outputs), -1)[:, 0] > 0.5).astype(np.int64)
    return outputs.argmax(axis=1)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class AugmentedEpochs:
    """The training arrays of every epoch under ``cfg.augment`` (deterministic for ``cfg.seed``).

    ``digits``: a fresh random ``augment_fraction`` of the images is distorted each epoch
    (:func:`train.augment.augment_digits`); ``photo``: ``photo_fraction`` of the train set is rendered
    once as synthetic photos and preprocessed as on the device (:func:`train.augment.photo_digits`),
    and these are added to every epoch; ``digits+photo``: both; ``text``: a fresh ``augment_fraction``
    of the reviews is cut to a snippet or to sampled sentences each epoch, then re-encoded."""

    def __init__(self, cfg: FitConfig, data: Data):
        from . import augment as aug

        aug.parse_mode(cfg.augment, data.dataset)
        self.cfg, self.data, self.aug = cfg, data, aug
        self.photo_q = self.photo_y = None
        n = len(data.y_train)
        if "photo" in cfg.augment:
            rng = np.random.default_rng([cfg.seed, 1101])
            k = int(round(cfg.photo_fraction * n))
            idx = np.sort(rng.choice(n, k, replace=False))
            t0 = time.time()
            self.photo_q = aug.photo_digits(data.q_train[idx].reshape(k, 28, 28), rng).reshape(k, -1)
            self.photo_y = data.y_train[idx]
            print(f"augment: {k} synthetic photos rendered and preprocessed in {time.time() - t0:.1f} s", flush=True)
        self.printed_q = self.printed_y = None
        if cfg.printed_fraction > 0:
            if data.dataset != "mnist":
                raise ValueError("printed digits are for the mnist data set")
            k = int(round(cfg.printed_fraction * n))
            t0 = time.time()
            pq, self.printed_y = aug.printed_digits(k, np.random.default_rng([cfg.seed, 1103]), cfg.display_share,
                                                    redraw_refused=cfg.printed_redraw)
            self.printed_q = pq.reshape(k, -1)
            print(f"augment: {k} printed/display digits rendered and preprocessed in {time.time() - t0:.1f} s",
                  flush=True)

    @property
    def n_per_epoch(self) -> int:
        return (len(self.data.y_train) + (0 if self.photo_q is None else len(self.photo_q))
                + (0 if self.printed_q is None else len(self.printed_q)))

    def epoch(self, e: int):
        cfg, data, aug = self.cfg, self.data, self.aug
        rng = np.random.default_rng([cfg.seed, 1102, e])
        q, y = data.q_train, data.y_train
        if self.printed_q is not None:  # the printed digits get the same per-epoch distortions
            q, y = np.concatenate([q, self.printed_q]), np.concatenate([y, self.printed_y])
        sel = rng.random(len(y)) < cfg.augment_fraction
        if cfg.augment in ("digits", "digits+photo") and sel.any():
            q = q.copy()
            q[sel] = aug.augment_digits(q[sel].reshape(-1, 28, 28), rng).reshape(int(sel.sum()), -1)
        elif cfg.augment == "text" and sel.any():
            q = q.copy()
            texts = aug.augment_texts([data.train_texts[i] for i in np.flatnonzero(sel)], rng, fraction=1.0)
            q[sel] = encode_multi_hot([tokenize(t) for t in texts], data.vocab)
        if self.photo_q is not None:
            q, y = np.concatenate([q, self.photo_q]), np.concatenate([y, self.photo_y])
        return q, y


def train_model(cfg: FitConfig, data: Data):
    from .models import build_model, compile_model

    set_seed(cfg.seed)
    model = build_model(cfg.arch, data.spec, data.n_outputs, cfg.dropout, data.output_activation)
    augmented = AugmentedEpochs(cfg, data) if cfg.augment != "none" or cfg.printed_fraction > 0 else None
    lr = cfg.lr
    if cfg.lr_schedule == "cosine":
        n_train = augmented.n_per_epoch if augmented is not None else len(data.y_train)
        steps = cfg.epochs * int(np.ceil(n_train / cfg.batch_size))
        lr = tf.keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=steps)
    compile_model(model, lr, data.output_activation)
    if cfg.optimizer == "bop":
        model.compile(optimizer=bop_optimizer(lr), loss=model.loss, metrics=["accuracy"])
    elif cfg.optimizer != "adam":
        raise ValueError(f"unknown optimizer {cfg.optimizer!r} (adam, bop)")
    t0 = time.time()
    if augmented is None:
        train_ds = make_dataset(data, data.q_train, data.y_train, cfg.batch_size, cfg.seed, shuffle=True)
        history = model.fit(train_ds, epochs=cfg.epochs, verbose=cfg.verbose)
    else:  # one fit call per epoch on that epoch's arrays (the optimizer and its schedule carry on)
        merged = {}
        for e in range(cfg.epochs):
            q, y = augmented.epoch(e)
            ds = make_dataset(data, q, y, cfg.batch_size, cfg.seed + e, shuffle=True)
            h = model.fit(ds, initial_epoch=e, epochs=e + 1, verbose=cfg.verbose)
            for k, v in h.history.items():
                merged.setdefault(k, []).extend(v)

        class _History:
            history = merged

        history = _History()
    if cfg.recalibrate_bn:
        q, _ = datasets.even_subset(data.q_train, data.y_train, min(cfg.recalibrate_bn, len(data.q_train)))
        recalibrate_batchnorm(model, data.x(q))
    return model, time.time() - t0, {k: [float(v) for v in vals] for k, vals in history.history.items()}


def bop_optimizer(lr, threshold: float = 1e-8, gamma: float = 1e-4):
    """larq's Bop (Helwegen et al. 2019) for the binary kernels (the variables larq marks as 1-bit: the latent
    weights of every QuantDense) and (legacy) Adam with ``lr`` (a float or a schedule) for every real-valued variable
    (biases, batch norm, the float output layer and shortcuts); Bop's threshold and gamma are larq's defaults."""
    return lq.optimizers.CaseOptimizer(
        (lq.optimizers.Bop.is_binary_variable, lq.optimizers.Bop(threshold=threshold, gamma=gamma)),
        default_optimizer=tf.keras.optimizers.legacy.Adam(learning_rate=lr))  # larq 0.14 takes legacy optimizers


def recalibrate_batchnorm(model, x: np.ndarray) -> None:
    """Set every BatchNormalization's moving mean/variance to the exact statistics of its input
    over ``x``, layer by layer in inference mode (the moving averages of a binary network lag
    behind its weights, whose signs keep flipping during training)."""
    for layer in model.layers:
        if not isinstance(layer, tf.keras.layers.BatchNormalization):
            continue
        probe = tf.keras.Model(model.input, layer.input)
        h = np.concatenate([probe(x[i:i + 4096], training=False).numpy() for i in range(0, len(x), 4096)])
        layer.moving_mean.assign(h.mean(axis=0).astype(np.float32))
        layer.moving_variance.assign(h.var(axis=0).astype(np.float32))


def evaluate_formats(cfg: FitConfig, data: Data, model, out: Path) -> dict:
    """Export every format into ``out`` and measure each on the (full or limited) test split."""
    from edge_rbmlp.engines.reference import ReferenceEngine

    from .export import export_packed, run_lce, run_tflite, tflite_ops, to_lce, to_tflite_float, to_tflite_int8

    arch = cfg.arch
    act = data.output_activation
    x_test = data.x(data.q_test)
    y = np.asarray(data.y_test).astype(np.int64)
    n = int(len(y))
    keras_out = model.predict(x_test, batch_size=1024, verbose=0)
    keras_pred = predicted_class(keras_out, act)
    acc = {"keras": {"accuracy": float(np.mean(keras_pred == y)), "n": n}}
    formats = {}
    files = {}

    def record(fmt, pred, extra=None):
        acc[fmt] = {"accuracy": float(np.mean(pred == y)), "n": n,
                    "agreement_with_keras": float(np.mean(pred == keras_pred)), **(extra or {})}

    packed = None
    if arch.is_binary:
        t0 = time.time()
        packed = export_packed(model, arch, data.spec, data.labels, act, vocab=data.vocab, name=cfg.name)
        engine = ReferenceEngine(packed)
        logits = np.concatenate([engine.logits_uint8(data.q_test[i:i + 2048]) for i in range(0, n, 2048)])
        ref_pred = (logits[:, 0] > 0).astype(np.int64) if act == "sigmoid" else logits.argmax(axis=1)
        record("rbm", ref_pred, {"engine": "reference", "eval_seconds": round(time.time() - t0, 2)})
        formats["rbm"] = packed
    t0 = time.time()
    flat = to_tflite_float(model)
    (out / "model.tflite").write_bytes(flat)
    files["model.tflite"] = flat
    pred, runtime = run_tflite(flat, x_test)
    record("tflite", predicted_class(pred, act), {"runtime": runtime, "eval_seconds": round(time.time() - t0, 2)})
    if cfg.int8:
        t0 = time.time()
        rep_q, _ = datasets.even_subset(data.q_train, data.y_train, min(500, len(data.q_train)))
        flat8, info = to_tflite_int8(model, data.x(rep_q))
        (out / "model_int8.tflite").write_bytes(flat8)
        files["model_int8.tflite"] = flat8
        pred, runtime = run_tflite(flat8, x_test)
        record("tflite_int8", predicted_class(pred, act),
               {"runtime": runtime, **info, "ops": tflite_ops(flat8), "eval_seconds": round(time.time() - t0, 2)})
    if cfg.lce and arch.is_binary:
        t0 = time.time()
        flat_lce, twin = to_lce(model, arch, data.spec, data.n_outputs, act)
        (out / "model_lce.tflite").write_bytes(flat_lce)
        files["model_lce.tflite"] = flat_lce
        twin_pred = predicted_class(twin.predict(x_test, batch_size=1024, verbose=0), act)
        pred = run_lce(flat_lce, x_test)
        record("lce", predicted_class(pred, act),
               {"runtime": "larq_compute_engine.testing.Interpreter", "ops": tflite_ops(flat_lce),
                "twin_agreement_with_keras": float(np.mean(twin_pred == keras_pred)),
                "eval_seconds": round(time.time() - t0, 2)})
    return {"accuracy": acc, "packed": packed, "files": files, "keras_pred": keras_pred}


def paper_size(arch: Architecture, n_inputs: int, n_classes: int) -> Optional[float]:
    try:
        from edge_rbmlp.size import paper_size_kib
    except ImportError:  # TODO(lead): edge_rbmlp.size.paper_size_kib not available
        return None
    return float(paper_size_kib(arch, n_inputs, n_classes))


def run_fit(cfg: FitConfig, out: Path) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    data = load_data(cfg)
    print(f"{cfg.dataset}: {len(data.y_train)} train / {len(data.y_test)} test samples, {data.spec.size} inputs; "
          f"arch {cfg.arch} {cfg.arch.options()}", flush=True)
    model, train_seconds, history = train_model(cfg, data)
    results = evaluate_formats(cfg, data, model, out)
    acc = results["accuracy"]
    vers = versions()
    data_prov = dict(data.provenance)
    data_prov.update({"n_train": int(len(data.y_train)), "n_test": int(len(data.y_test))})
    if data.vocab is not None:
        data_prov["vocabulary"] = {"size": len(data.vocab), "from": "train split", "tokenizer": TOKENIZER}
    provenance = {"command": cfg.command, "data": data_prov,
                  "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seed": cfg.seed,
                  "versions": vers,
                  "hyperparameters": {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr,
                                      "dropout": cfg.dropout, "optimizer": "adam",
                                      "lr_schedule": cfg.lr_schedule,
                                      "recalibrate_bn_samples": cfg.recalibrate_bn,
                                      **({"augment": cfg.augment, "augment_fraction": cfg.augment_fraction,
                                          "photo_fraction": cfg.photo_fraction}
                                         if cfg.augment != "none" else {}),
                                      **({"printed_fraction": cfg.printed_fraction, "display_share": cfg.display_share,
                                          "printed_redraw": cfg.printed_redraw}
                                         if cfg.printed_fraction > 0 else {})},
                  "training_seconds": round(train_seconds, 1)}
    n_classes = len(data.labels) if data.output_activation == "softmax" else 1
    report = {
        "name": cfg.name, "dataset": cfg.dataset, "arch": cfg.arch.to_dict(),
        "split": "test", "accuracy": acc, "history": history, "provenance": provenance,
        "paper_size_kib": paper_size(cfg.arch, data.spec.size, n_classes),
        "paper_size_note": "eq. 4-7 of the paper (edge_rbmlp.size.paper_size_kib) with our pool size; "
                           "the paper's printed P rows correspond to a pooled width of floor(inputs/9)",
        "training_seconds": round(train_seconds, 1),
    }
    packed = results["packed"]
    file_sizes = {}
    if packed is not None:
        rbm = acc["rbm"]
        packed.accuracy = {"dataset": cfg.dataset, "split": "test", "n": rbm["n"], "accuracy": rbm["accuracy"],
                           "keras_accuracy": acc["keras"]["accuracy"],
                           "agreement_with_keras": rbm["agreement_with_keras"]}
        packed.provenance = provenance
        mode = cfg.arch.input_mode + (f", {cfg.arch.input_bits} bits" if cfg.arch.input_mode == "planes" else "")
        packed.description = (f"{cfg.arch} ({mode} input) trained on {cfg.dataset} with larq; "
                              f"test accuracy {rbm['accuracy']:.4f}")
        file_sizes["model.rbm"] = packed.save(out / "model.rbm")
        if data.vocab is not None:
            report["vocabulary_utf8_bytes_uncompressed"] = len("\n".join(data.vocab).encode("utf-8"))
    for fname, blob in results["files"].items():
        file_sizes[fname] = len(blob)
    report["file_bytes"] = file_sizes
    report["file_sha256"] = {f: _sha256((out / f).read_bytes()) for f in file_sizes if (out / f).exists()}
    report["total_seconds"] = round(time.time() - t_start, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report
