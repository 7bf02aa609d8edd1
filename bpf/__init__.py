"""The kernel program (netmon.bpf.c) and its shared header (netmon.h), shipped as
package data of netmon.bpf so the loader finds them in any install."""
