// Package initramfs builds the initramfs that boots a Confidant guest: a
// gzip-compressed newc cpio archive holding the agent as /init, its
// configuration, the verifier's CA certificate, the kernel modules the agent
// loads (resolved from modules.dep, in load order) and any extra files.
//
// The output is reproducible: the same inputs give the same bytes. Entries are
// sorted by path, every entry is owned by root with one fixed modification
// time (SOURCE_DATE_EPOCH, 0 by default), inode numbers are assigned in order,
// and the gzip header carries no name and no time. The compressed bytes depend
// on the Go version's compress/flate; the cpio stream does not.
//
// Three layers, each usable alone:
//
//   - [Writer] writes a newc ("070701") cpio stream entry by entry, like
//     archive/tar's Writer.
//   - [Archive] is an in-memory tree of directories, files, symlinks and
//     device nodes that it writes in a canonical order.
//   - [Build] lays out a Confidant initramfs from a [Spec], and
//     [ResolveModules] turns module names into the files to load, in order.
//
// The layout inside the archive ([InitPath], [ConfigPath], [CAPath],
// [ModulesListPath]) is what the agent expects; the agent's defaults must
// match it.
package initramfs
