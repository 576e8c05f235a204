"""Files of one's own sentence pairs, as eval_sts.py --pairs and train.py --dev-file read them."""
import csv

import data


def write_pairs(path, data_root, delimiter=","):
    """STS-B dev as such a file (score, sentence1, sentence2: in another order than the header check's);
    delimiter a tab: a TSV, its quotes text; ",": a CSV, quoted where needed. Returns STS-B dev."""
    dev = data.load_sts("STSBenchmark", data_root, ["dev"])["dev"]
    rows = [("score", "sentence1", "sentence2")] + list(zip(dev.scores, dev.sent1, dev.sent2))
    with open(path, "w", newline="", encoding="utf-8") as f:
        if delimiter == "\t":
            f.writelines("\t".join(map(str, row)) + "\n" for row in rows)
        else:
            csv.writer(f, lineterminator="\n").writerows(rows)
    return dev
