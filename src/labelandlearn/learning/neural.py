"""A dense neural network classifier in PyTorch, on sparse TF-IDF, embeddings or both.

The network is input layer → [ReLU → dropout → linear]* → softmax. Sparse input (CSR from
TF-IDF, alone or stacked with embeddings) enters through an ``nn.EmbeddingBag`` in sum mode
with the TF-IDF values as per-sample weights, which computes the same product as a linear layer
while touching only the non-zero columns. Dense input enters through ``nn.Linear``.

Training uses class weights, a stratified validation split for early stopping (the weights of
the epoch with the lowest validation loss are kept) and records the training curve. It runs on
the CPU unless ``device`` names another one or is "auto" with a CUDA GPU present.

torch is imported inside functions, so this module imports without the ``nn`` extra; using the
classifier without torch raises MissingExtraError.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import scipy.sparse as sp

from labelandlearn.errors import MissingExtraError, ValidationError
from labelandlearn.learning.base import ArrayState, Classifier, Features, register_classifier

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

NN_EXTRA = "pip install 'labelandlearn[nn]'"
# Below this many training rows no validation split is taken and all epochs run.
MIN_ROWS_FOR_VALIDATION = 60
# Learning rate of the SGD step that each answer makes (see NeuralClassifier). A network
# trained on 600 tweets, then updated with 10 answers one by one: at 3e-4 the answered texts'
# own label gained 0.011 in probability and 98% of 300 other tweets kept their predicted label;
# at 1e-3, 0.033 and 93%; at 1e-2, 0.335 and 80%. The linear model's update gained 0.005, 100%.
ONLINE_LEARNING_RATE = 3e-4


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise MissingExtraError(
            f"the neural network classifier needs PyTorch ({exc}); run: {NN_EXTRA}"
        ) from exc
    return torch


def _build_network(
    input_kind: str, n_features: int, hidden_sizes: Sequence[int], n_classes: int, dropout: float
) -> Any:
    torch = _torch()
    nn = torch.nn

    class DenseNetwork(nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            width = hidden_sizes[0] if hidden_sizes else n_classes
            if input_kind == "sparse":
                self.input = nn.EmbeddingBag(n_features, width, mode="sum")
                self.input_bias = nn.Parameter(torch.zeros(width))
            else:
                self.input = nn.Linear(n_features, width)
            # With no hidden sizes the input layer maps straight to the classes.
            outputs = [*hidden_sizes[1:], n_classes] if hidden_sizes else []
            layers: list[Any] = []
            for size_in, size_out in zip(hidden_sizes, outputs, strict=True):
                layers += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(size_in, size_out)]
            self.hidden = nn.Sequential(*layers)

        def forward(self, batch: tuple[Any, ...]) -> Any:
            if input_kind == "sparse":
                indices, offsets, weights = batch
                first = self.input(indices, offsets, per_sample_weights=weights) + self.input_bias
            else:
                first = self.input(batch[0])
            return self.hidden(first)

    return DenseNetwork()


@register_classifier("mlp")
class NeuralClassifier(Classifier):
    """Dense network with ReLU and dropout, softmax output, class weights, early stopping.

    ``max_input_features`` caps the sparse input columns: the columns present in most
    training rows are kept, because the first layer has ``columns × hidden_sizes[0]`` weights.
    ``partial_fit`` runs ``partial_fit_steps`` plain SGD steps at ``online_learning_rate``
    on the new examples when ``fit`` trained the network. Adam would move every weight with
    a gradient by about its learning rate on each step, whatever the gradient's size: on one
    answer at a time that pushed a trained network's predictions to 0.9 and above for most
    items within 5 answers. A network that partial_fit started keeps AdamW.
    """

    def __init__(
        self,
        hidden_sizes: Sequence[int] = (256,),
        dropout: float = 0.3,
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 64,
        max_epochs: int = 30,
        patience: int = 3,
        validation_fraction: float = 0.1,
        class_weight: str | None = "balanced",
        max_input_features: int = 30_000,
        partial_fit_steps: int = 1,
        online_learning_rate: float = ONLINE_LEARNING_RATE,
        device: str = "cpu",
        n_threads: int | None = 1,
        random_state: int = 0,
    ) -> None:
        self.hidden_sizes = hidden_sizes
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.max_input_features = max_input_features
        self.partial_fit_steps = partial_fit_steps
        self.online_learning_rate = online_learning_rate
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state

    # ----------------------------------------------------------------- set-up

    @contextmanager
    def _cpu_threads(self) -> Iterator[None]:
        # Batches of this network are small: on 2 busy cores one thread ran an epoch 5 times
        # faster than two, whose OpenMP workers spin waiting for each other. torch's thread
        # count is process-wide, so it is set for the call and then restored.
        torch = _torch()
        previous = torch.get_num_threads()
        if self.n_threads:
            torch.set_num_threads(self.n_threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    def _device(self) -> Any:
        torch = _torch()
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def _init_network(self, X: Features, classes: np.ndarray) -> None:
        self.classes_ = np.asarray(classes, dtype=np.int64)
        self.input_kind_ = "sparse" if sp.issparse(X) else "dense"
        self.n_features_in_ = int(X.shape[1])
        self.columns_ = self._choose_columns(X)
        width = len(self.columns_) if self.columns_ is not None else self.n_features_in_
        self.network_ = _build_network(
            self.input_kind_,
            width,
            [int(h) for h in self.hidden_sizes],
            len(self.classes_),
            self.dropout,
        ).to(self._device())
        self.optimizer_ = self._new_optimizer()
        self.training_curve_: list[dict[str, float]] = []

    def _new_optimizer(self) -> Any:
        torch = _torch()
        return torch.optim.AdamW(
            self.network_.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )

    def _choose_columns(self, X: Features) -> np.ndarray | None:
        if not sp.issparse(X) or X.shape[1] <= self.max_input_features:
            return None
        document_frequency = np.bincount(sp.csr_matrix(X).indices, minlength=X.shape[1])
        top = np.argsort(-document_frequency, kind="stable")[: self.max_input_features]
        return np.sort(top).astype(np.int64)

    def _check_input(self, X: Features) -> Features:
        if X.shape[1] != self.n_features_in_:
            raise ValidationError(
                f"input has {X.shape[1]} features, the network was built for "
                f"{self.n_features_in_}; retrain the model after changing the featurizer"
            )
        if self.input_kind_ == "dense":
            dense = sp.csr_matrix(X).toarray() if sp.issparse(X) else X
            return np.asarray(dense, dtype=np.float32)
        X = sp.csr_matrix(X, dtype=np.float32)
        return X[:, self.columns_] if self.columns_ is not None else X

    def _tensors(self, X: Features, rows: np.ndarray) -> tuple[Any, ...]:
        torch = _torch()
        device = self._device()
        if self.input_kind_ == "dense":
            return (torch.from_numpy(np.ascontiguousarray(X[rows])).to(device),)
        batch = X[rows]
        return (
            torch.from_numpy(batch.indices.astype(np.int64)).to(device),
            torch.from_numpy(batch.indptr[:-1].astype(np.int64)).to(device),
            torch.from_numpy(batch.data.astype(np.float32)).to(device),
        )

    def _loss_function(self, y: np.ndarray) -> Any:
        torch = _torch()
        weights = None
        if self.class_weight == "balanced":
            counts = np.bincount(y, minlength=len(self.classes_)).astype(np.float64)
            present = counts > 0
            balanced = np.ones(len(self.classes_))
            balanced[present] = y.size / (present.sum() * counts[present])
            weights = torch.tensor(balanced, dtype=torch.float32, device=self._device())
        return torch.nn.CrossEntropyLoss(weight=weights)

    def _class_positions(self, y: np.ndarray) -> np.ndarray:
        positions = np.searchsorted(self.classes_, y)
        positions = np.clip(positions, 0, len(self.classes_) - 1)
        unknown = self.classes_[positions] != y
        if unknown.any():
            raise ValidationError(
                f"labels {sorted(set(y[unknown].tolist()))} are not among the network's classes "
                f"{self.classes_.tolist()}; retrain the model to add a class"
            )
        return positions.astype(np.int64)

    # ----------------------------------------------------------------- training

    def fit(self, X: Features, y: np.ndarray, sample_weight: np.ndarray | None = None) -> Self:
        # NOTE: sample_weight is ignored; class weights come from ``class_weight``.
        torch = _torch()
        y = np.asarray(y, dtype=np.int64)
        if np.unique(y).size < 2:
            raise ValidationError(
                f"the neural network needs examples of at least 2 classes, got {np.unique(y)}"
            )
        started = time.perf_counter()
        with torch.random.fork_rng(devices=[]), self._cpu_threads():
            torch.manual_seed(self.random_state)
            self._init_network(X, np.unique(y))
            X_checked = self._check_input(X)
            targets = self._class_positions(y)
            train_rows, validation_rows = self._split(targets)
            self._train_epochs(X_checked, targets, train_rows, validation_rows)
        logger.info(
            "trained network %s on %d rows in %.1f s (%d epochs)",
            self.architecture(),
            y.size,
            time.perf_counter() - started,
            len(self.training_curve_),
        )
        return self

    def _split(self, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.model_selection import train_test_split

        rows = np.arange(targets.size)
        counts = np.bincount(targets)
        if targets.size < MIN_ROWS_FOR_VALIDATION or counts[counts > 0].min() < 2:
            return rows, rows[:0]
        train_rows, validation_rows = train_test_split(
            rows,
            test_size=self.validation_fraction,
            stratify=targets,
            random_state=self.random_state,
        )
        return np.sort(train_rows), np.sort(validation_rows)

    def _train_epochs(
        self,
        X: Features,
        targets: np.ndarray,
        train_rows: np.ndarray,
        validation_rows: np.ndarray,
    ) -> None:
        loss_function = self._loss_function(targets[train_rows])
        shuffler = np.random.default_rng(self.random_state)
        best_loss, best_state, epochs_without_gain = np.inf, None, 0

        for epoch in range(1, self.max_epochs + 1):
            order = shuffler.permutation(train_rows)
            train_loss = self._run_epoch(X, targets, order, loss_function)
            record = {"epoch": float(epoch), "train_loss": train_loss}
            if validation_rows.size:
                record.update(self._validate(X, targets, validation_rows, loss_function))
            self.training_curve_.append(record)
            if not validation_rows.size:
                continue
            if record["validation_loss"] < best_loss - 1e-4:
                best_loss, epochs_without_gain = record["validation_loss"], 0
                best_state = {k: v.detach().clone() for k, v in self.network_.state_dict().items()}
            else:
                epochs_without_gain += 1
                if epochs_without_gain >= self.patience:
                    break

        if best_state is not None:
            self.network_.load_state_dict(best_state)
        losses = [r.get("validation_loss", np.inf) for r in self.training_curve_]
        self.best_epoch_ = int(np.argmin(losses)) + 1 if validation_rows.size else len(losses)
        self.network_.eval()

    def _run_epoch(
        self, X: Features, targets: np.ndarray, order: np.ndarray, loss_function: Any
    ) -> float:
        torch = _torch()
        self.network_.train()
        total, seen = 0.0, 0
        for start in range(0, order.size, self.batch_size):
            rows = order[start : start + self.batch_size]
            labels = torch.from_numpy(targets[rows]).to(self._device())
            self.optimizer_.zero_grad()
            loss = loss_function(self.network_(self._tensors(X, rows)), labels)
            loss.backward()
            self.optimizer_.step()
            total += float(loss.item()) * rows.size
            seen += rows.size
        return total / max(seen, 1)

    def _validate(
        self, X: Features, targets: np.ndarray, rows: np.ndarray, loss_function: Any
    ) -> dict[str, float]:
        from sklearn.metrics import f1_score

        torch = _torch()
        logits = self._logits(X, rows)
        labels = torch.from_numpy(targets[rows]).to(logits.device)
        loss = float(loss_function(logits, labels).item())
        predicted = logits.argmax(dim=1).cpu().numpy()
        macro_f1 = float(f1_score(targets[rows], predicted, average="macro", zero_division=0))
        return {"validation_loss": loss, "validation_macro_f1": macro_f1}

    def _logits(self, X: Features, rows: np.ndarray) -> Any:
        torch = _torch()
        self.network_.eval()
        outputs = []
        with torch.no_grad():
            for start in range(0, rows.size, 1024):
                outputs.append(self.network_(self._tensors(X, rows[start : start + 1024])))
        return torch.cat(outputs)

    def partial_fit(self, X: Features, y: np.ndarray, classes: np.ndarray | None = None) -> Self:
        torch = _torch()
        y = np.asarray(y, dtype=np.int64)
        if not self.is_fitted:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.random_state)
                self._init_network(X, np.unique(classes if classes is not None else y))
        X_checked = self._check_input(X)
        targets = self._class_positions(y)
        rows = np.arange(targets.size)
        loss_function = torch.nn.CrossEntropyLoss()
        labels = torch.from_numpy(targets).to(self._device())
        self.network_.train()
        if self.training_curve_:
            # A network that ``fit`` trained gets small plain SGD steps. SGD keeps no state
            # between answers, so a model read back from its file takes the same steps.
            optimizer = torch.optim.SGD(self.network_.parameters(), lr=self.online_learning_rate)
        else:
            # A network that only ever learned from partial_fit needs Adam's larger steps.
            optimizer = self.optimizer_
        with self._cpu_threads():
            for _ in range(self.partial_fit_steps):
                optimizer.zero_grad()
                loss = loss_function(self.network_(self._tensors(X_checked, rows)), labels)
                loss.backward()
                optimizer.step()
        self.network_.eval()
        return self

    # ----------------------------------------------------------------- prediction

    def predict_proba(self, X: Features) -> np.ndarray:
        if not self.is_fitted:
            raise ValidationError("the neural network is not trained yet; call fit() first")
        torch = _torch()
        X_checked = self._check_input(X)
        with self._cpu_threads():
            logits = self._logits(X_checked, np.arange(X_checked.shape[0]))
        return np.asarray(torch.softmax(logits, dim=1).cpu().numpy(), dtype=np.float64)

    def architecture(self) -> str:
        """Describe the layers for the model page, for example "sparse 30000 → 256 → 3"."""
        if not self.is_fitted:
            return "not built"
        width = len(self.columns_) if self.columns_ is not None else self.n_features_in_
        sizes = [str(width), *(str(h) for h in self.hidden_sizes), str(len(self.classes_))]
        return f"{self.input_kind_} " + " → ".join(sizes) + f", dropout {self.dropout}"

    # ----------------------------------------------------------------- state

    def get_state(self) -> tuple[dict[str, Any], ArrayState]:
        config: dict[str, Any] = {"params": _json_params(self.get_params())}
        if not self.is_fitted:
            return config, {}
        config.update(
            {
                "input_kind": self.input_kind_,
                "n_features_in": self.n_features_in_,
                "architecture": self.architecture(),
                "training_curve": self.training_curve_,
                "best_epoch": getattr(self, "best_epoch_", None),
            }
        )
        arrays = {
            f"weights.{name}": tensor.detach().cpu().numpy()
            for name, tensor in self.network_.state_dict().items()
        }
        arrays["classes"] = self.classes_
        if self.columns_ is not None:
            arrays["columns"] = self.columns_
        return config, arrays

    @classmethod
    def from_state(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        params = dict(config["params"])
        params["hidden_sizes"] = tuple(params.get("hidden_sizes", (256,)))
        classifier = cls(**params)
        if "input_kind" not in config:
            return classifier
        torch = _torch()
        classifier.classes_ = np.asarray(arrays["classes"], dtype=np.int64)
        classifier.input_kind_ = config["input_kind"]
        classifier.n_features_in_ = int(config["n_features_in"])
        classifier.columns_ = arrays.get("columns")
        width = (
            len(classifier.columns_)
            if classifier.columns_ is not None
            else classifier.n_features_in_
        )
        classifier.network_ = _build_network(
            classifier.input_kind_,
            width,
            [int(h) for h in classifier.hidden_sizes],
            len(classifier.classes_),
            classifier.dropout,
        ).to(classifier._device())
        state = {
            name[len("weights.") :]: torch.from_numpy(np.array(value))
            for name, value in arrays.items()
            if name.startswith("weights.")
        }
        classifier.network_.load_state_dict(state)
        classifier.network_.eval()
        classifier.optimizer_ = classifier._new_optimizer()
        classifier.training_curve_ = list(config.get("training_curve", []))
        if config.get("best_epoch") is not None:
            classifier.best_epoch_ = int(config["best_epoch"])
        return classifier


def _json_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
