#!/bin/sh
# mkrepo.sh: dcroll's signed apt and dnf repositories, from the packages of
# `make package`. `make repo` runs it as
#
#	DCROLL_REPO_KEY=dcroll-repo.key packaging/mkrepo.sh dist/repo dist/*.deb dist/*.rpm
#
# It adds the packages to what OUT holds already, so keeping OUT between
# releases keeps the repositories' history:
#
#	OUT/public/            publish this directory as it is (any HTTP server)
#	  dcroll.asc           the signing key's public half
#	  deb/                 the apt repository (reprepro): dists/stable/{Release,InRelease,Release.gpg},
#	                       dists/stable/main/binary-amd64/Packages, pool/main/d/dcroll/*.deb
#	  rpm/                 the dnf repository (createrepo_c): the .rpm files, each signed,
#	                       repodata/repomd.xml and its signature repomd.xml.asc
#	OUT/reprepro/          reprepro's configuration and database: keep, do not publish
#
# The key is DCROLL_REPO_KEY, an ASCII-armored secret key file without a
# passphrase (keep it where only the build can read it). gpg runs in a
# throwaway GNUPGHOME: nothing of the builder's own keyring is used or
# changed. mkrepo.sh never makes a key; without one it says how to make it.
set -eu

die() {
	echo "mkrepo: $*" >&2
	exit 1
}

usage() {
	echo "usage: DCROLL_REPO_KEY=FILE mkrepo.sh OUT PACKAGE.deb|PACKAGE.rpm..." >&2
	exit 2
}

[ $# -ge 2 ] || usage
out=$1
shift

if [ -z "${DCROLL_REPO_KEY:-}" ]; then
	cat >&2 <<'EOF'
mkrepo: DCROLL_REPO_KEY is not set: it names the repositories' signing key,
an ASCII-armored secret key file without a passphrase. Make one once, keep it
secret, and publish only its public half (make repo writes it as dcroll.asc):

	export GNUPGHOME="$(mktemp -d)"
	gpg --batch --passphrase '' --quick-gen-key 'dcroll packages <packages@example.com>' rsa4096 sign 3y
	gpg --armor --export-secret-keys > dcroll-repo.key
	gpgconf --kill gpg-agent; rm -rf "$GNUPGHOME"; unset GNUPGHOME

then: make repo DCROLL_REPO_KEY=dcroll-repo.key
EOF
	exit 1
fi
[ -f "$DCROLL_REPO_KEY" ] && [ -r "$DCROLL_REPO_KEY" ] || die "DCROLL_REPO_KEY=$DCROLL_REPO_KEY: no such readable file"

for tool in gpg:gpg reprepro:reprepro createrepo_c:createrepo-c rpmsign:rpm rpm:rpm; do
	command -v "${tool%%:*}" >/dev/null 2>&1 || die "${tool%%:*} not found: apt-get install -y ${tool#*:}"
done

debs=0
rpms=0
for p in "$@"; do
	[ -f "$p" ] || die "$p: no such package (run make package first)"
	case "$p" in
	*.deb) debs=$((debs + 1)) ;;
	*.rpm) rpms=$((rpms + 1)) ;;
	*) die "$p is neither a .deb nor an .rpm" ;;
	esac
done
[ "$debs" -gt 0 ] || die "no .deb among the packages: the apt repository would be empty"
[ "$rpms" -gt 0 ] || die "no .rpm among the packages: the dnf repository would be empty"

# A throwaway keyring, removed (with its gpg-agent) whatever happens.
GNUPGHOME=$(mktemp -d "${TMPDIR:-/tmp}/dcroll-repo-gpg.XXXXXX")
export GNUPGHOME
cleanup() {
	gpgconf --kill gpg-agent >/dev/null 2>&1 || true
	rm -rf "$GNUPGHOME"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

gpg --batch --quiet --import "$DCROLL_REPO_KEY" 2>"$GNUPGHOME/import.log" ||
	die "DCROLL_REPO_KEY=$DCROLL_REPO_KEY is not a key gpg can import: $(cat "$GNUPGHOME/import.log")"
fprs=$(gpg --batch --with-colons --list-secret-keys 2>/dev/null | awk -F: '$1 == "sec" { want = 1; next } want && $1 == "fpr" { print $10; want = 0 }')
case "$fprs" in
"") die "DCROLL_REPO_KEY=$DCROLL_REPO_KEY holds no secret key (a public key cannot sign)" ;;
*[!0-9A-F]*) die "DCROLL_REPO_KEY=$DCROLL_REPO_KEY holds more than one secret key; give the one that signs the repositories" ;;
esac
fpr=$fprs
echo probe | gpg --batch --pinentry-mode error --local-user "$fpr" --detach-sign >/dev/null 2>&1 ||
	die "the key $fpr in $DCROLL_REPO_KEY cannot sign without a passphrase (or has no signing key): remove the passphrase (gpg --passwd) of the copy the build uses"

public="$out/public"

# A version is published once: other contents under a published name are
# refused before anything changes. The pool keeps each .deb as it came;
# signing changes an .rpm but not the header it signs.
for p in "$@"; do
	case "$p" in
	*.deb)
		dest="$public/deb/pool/main/d/dcroll/$(basename "$p")"
		[ ! -f "$dest" ] || cmp -s "$p" "$dest" ;;
	*.rpm)
		dest="$public/rpm/$(basename "$p")"
		[ ! -f "$dest" ] ||
			[ "$(rpm -qp --qf '%{SHA256HEADER}' "$p" 2>/dev/null)" = "$(rpm -qp --qf '%{SHA256HEADER}' "$dest" 2>/dev/null)" ] ;;
	esac || die "$(basename "$p") is published already, with other contents: a version is published once; build another version"
done

mkdir -p "$public/deb" "$public/rpm" "$out/reprepro/conf"
gpg --batch --armor --export "$fpr" >"$public/dcroll.asc.new"
mv "$public/dcroll.asc.new" "$public/dcroll.asc"

# apt: reprepro keeps the newest version of each package in the suite and
# signs Release (Release.gpg) and writes InRelease each time it exports.
cat >"$out/reprepro/conf/distributions" <<EOF
Origin: dcroll
Label: dcroll
Suite: stable
Codename: stable
Architectures: amd64
Components: main
Description: dcroll: rolling upgrades across a data center's hosts through ZooKeeper
SignWith: $fpr
EOF
reprepro() {
	command reprepro --silent --basedir "$out/reprepro" --outdir "$(cd "$public/deb" && pwd)" "$@"
}
for deb in "$@"; do
	case "$deb" in *.deb) reprepro includedeb stable "$deb" ;; esac
done
reprepro export stable

# dnf: each .rpm signed (rpm -K checks it against the imported key), and
# the metadata signed for repo_gpgcheck.
for rpm in "$@"; do
	case "$rpm" in *.rpm) ;; *) continue ;; esac
	dest="$public/rpm/$(basename "$rpm")"
	[ -f "$dest" ] && continue # the same: checked above
	cp "$rpm" "$dest.new"
	# Debian's rpm names gpg2, which Debian no longer ships under that name.
	rpmsign --addsign --define "__gpg $(command -v gpg)" --define "_gpg_name $fpr" --define "_gpg_path $GNUPGHOME" \
		"$dest.new" >"$GNUPGHOME/rpmsign.log" 2>&1 ||
		die "rpmsign --addsign $rpm failed: $(cat "$GNUPGHOME/rpmsign.log")"
	mv "$dest.new" "$dest"
done
createrepo_c --quiet --update "$public/rpm"
rm -f "$public/rpm/repodata/repomd.xml.asc"
gpg --batch --armor --local-user "$fpr" --detach-sign "$public/rpm/repodata/repomd.xml"
cp "$public/dcroll.asc" "$public/rpm/repodata/repomd.xml.key"

echo "mkrepo: signed with $fpr; publish $public"
