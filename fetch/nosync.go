package fetch

import (
	"context"
	"io"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
)

// noPieceSync is file storage whose pieces do not sync to disk one by one.
//
// With classic file I/O the library fsyncs the whole file each time a
// piece passes its hash check: thousands of fsyncs for one release, from
// every host sharing a disk. Fetch syncs the verified file once before it
// installs it, and a piece the completion database claims but the disk lost
// in a crash fails that verification and is fetched again, so the per-piece
// syncs buy nothing.
type noPieceSync struct {
	storage.ClientImplCloser
}

func (s noPieceSync) OpenTorrent(ctx context.Context, info *metainfo.Info, ih metainfo.Hash) (storage.TorrentImpl, error) {
	t, err := s.ClientImplCloser.OpenTorrent(ctx, info, ih)
	if err != nil {
		return t, err
	}
	piece := t.Piece
	t.Piece = func(p metainfo.Piece) storage.PieceImpl {
		pi := piece(p)
		if wt, ok := pi.(io.WriterTo); ok {
			return noSyncWriterToPiece{pi, wt}
		}
		return noSyncPiece{pi}
	}
	return t, nil
}

// noSyncPiece hides the storage.Flusher of the piece it wraps.
type noSyncPiece struct{ storage.PieceImpl }

// noSyncWriterToPiece is a noSyncPiece that keeps the piece's io.WriterTo,
// which the client hashes pieces with.
type noSyncWriterToPiece struct {
	storage.PieceImpl
	wt io.WriterTo
}

func (p noSyncWriterToPiece) WriteTo(w io.Writer) (int64, error) { return p.wt.WriteTo(w) }
