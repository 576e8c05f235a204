"""SimCSE's training files, in the authors' formats: one sentence a line (.txt, unsupervised) or a CSV of
sent0,sent1[,hard_neg] (supervised: premise, entailment[, contradiction]), read strictly."""
import csv
import io
from pathlib import Path

from formats.files import DataError, read_lines, read_text


def read_sentences(path):
    """Unsupervised SimCSE's input: one sentence a line. Returns (sentences, number of blank lines
    skipped)."""
    lines = read_lines(path)
    sentences = [line.strip() for line in lines if line.strip()]
    return sentences, len(lines) - len(sentences)


def read_nli_csv(path):
    """Supervised SimCSE's input: a CSV with header sent0,sent1[,hard_neg]
    (premise, entailment[, contradiction]).

    Returns (rows as tuples, number of blank lines and rows with a blank field skipped). A line that does not
    fit -- a wrong number of columns, a stray or unclosed quote (csv_rows) -- refuses the whole file, naming
    the line where its row starts."""
    rows, skipped, header = [], 0, None
    for first, row in csv_rows(path):
        if header is None:
            header = row
            if len(header) not in (2, 3):
                raise DataError(f"{path}:1: expected a header of 2 or 3 columns (sent0,sent1[,hard_neg]), "
                                f"got {header}")
            continue
        if not row:  # a blank line
            skipped += 1
            continue
        if len(row) != len(header):
            raise DataError(f"{path}:{first}: expected {len(header)} columns ({','.join(header)}), "
                            f"found {len(row)}")
        if any(not field.strip() for field in row):
            skipped += 1
            continue
        rows.append(tuple(field.strip() for field in row))
    if header is None:
        raise DataError(f"{path}:1: expected a header of 2 or 3 columns (sent0,sent1[,hard_neg]), "
                        "got an empty file")
    return rows, skipped


def csv_rows(path, delimiter=","):
    """(line number where the row starts, fields) of each row of a CSV (delimiter "\t": a TSV, where quotes
    are text), strictly: a stray or unclosed quote, or a quoted field that runs on over lines, refuses the
    whole file, naming the line where its row starts (an unclosed quote would otherwise swallow the lines
    after it into one field)."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(read_text(path)), delimiter=delimiter, quoting=quoting, strict=True)
    start = 1
    while True:
        try:
            row = next(reader, None)
        except csv.Error as e:  # strict: `a,"b"c`, or a quote still open at the end of the file
            raise DataError(f"{path}:{start}: {e} (an unclosed or stray quote?)") from None
        if row is None:
            return
        first, start = start, reader.line_num + 1
        if any("\n" in field for field in row):
            raise DataError(f"{path}:{first}: a quoted field runs on to line {reader.line_num} "
                            "(an unclosed quote?)")
        yield first, row


def read(path):
    """(examples, skipped): each example a tuple of the sentences that form one row of a batch --
    (s, s) for a sentence of a .txt file (two dropout views of it), (premise, entailment[, contradiction])
    for a CSV."""
    path = Path(path)
    if path.suffix.lower() == ".csv":  # train.CSV too
        return read_nli_csv(path)
    sentences, skipped = read_sentences(path)
    return [(s, s) for s in sentences], skipped
