package pgstore

import (
	"bytes"

	"github.com/jackc/pgx/v5"
)

// Read-ahead of a cursor: it starts small (a page of 50 devices reads one round trip) and doubles
// up to the most, so a full scan takes few round trips without holding much memory.
const (
	firstPage = 64
	largePage = 2048
)

// cursor is a kvstore.Cursor over one bucket. It reads ahead a page of rows at a time, in the
// direction it moves, and keeps no query open between moves: the repository may run other
// queries on the transaction's connection while it walks. A write to the bucket since the page
// was read makes it read again from where it stands.
type cursor struct {
	b *bucket
	// rows is the page read ahead, in the direction of travel; at is the row last returned.
	rows     []row
	at       int
	backward bool
	// complete: the page holds every row left in its direction (the query returned fewer than
	// asked), so moving past it is the end.
	complete bool
	// writes is the bucket's write count when the page was read.
	writes int
	page   int
	done   bool
}

type row struct{ k, v []byte }

func (c *cursor) First() ([]byte, []byte) { return c.read(false, nil, false) }
func (c *cursor) Last() ([]byte, []byte)  { return c.read(true, nil, false) }

func (c *cursor) Seek(key []byte) ([]byte, []byte) {
	return c.read(false, key, true)
}

func (c *cursor) Next() ([]byte, []byte) { return c.move(false) }
func (c *cursor) Prev() ([]byte, []byte) { return c.move(true) }

// move steps one row forward or backward from the row last returned.
func (c *cursor) move(backward bool) ([]byte, []byte) {
	if c.done || len(c.rows) == 0 {
		return nil, nil
	}
	cur := c.rows[c.at].k
	fresh := c.writes == c.b.t.writes[c.b.name]
	if backward == c.backward && fresh {
		if c.at+1 < len(c.rows) {
			c.at++
			return c.rows[c.at].k, c.rows[c.at].v
		}
		if c.complete {
			c.done = true
			return nil, nil
		}
	}
	return c.read(backward, cur, false)
}

// read reads a page in the given direction from key (all rows when key is nil; key itself
// included only when inclusive) and returns its first row.
func (c *cursor) read(backward bool, key []byte, inclusive bool) ([]byte, []byte) {
	if c.page == 0 || backward != c.backward {
		c.page = firstPage
	} else {
		c.page = min(c.page*2, largePage)
	}
	op, order := ">", "ASC"
	if backward {
		op, order = "<", "DESC"
	}
	if inclusive {
		op += "="
	}
	q := "SELECT key, value FROM hale_kv WHERE bucket = $1"
	args := []any{c.b.name}
	if key != nil {
		q += " AND key " + op + " $3"
		args = append(args, nil, bytes.Clone(key))
	} else {
		args = append(args, nil)
	}
	q += " ORDER BY key " + order + " LIMIT $2"
	args[1] = c.page
	c.rows, c.at, c.backward, c.done = c.rows[:0], 0, backward, false
	c.writes = c.b.t.writes[c.b.name]
	rows, err := c.b.t.tx.Query(c.b.t.ctx, q, args...)
	if err != nil {
		c.b.t.fail(err)
		c.done = true
		return nil, nil
	}
	var r row
	_, err = pgx.ForEachRow(rows, []any{&r.k, &r.v}, func() error {
		if r.v == nil {
			r.v = []byte{}
		}
		c.rows = append(c.rows, r)
		r = row{}
		return nil
	})
	if err != nil {
		c.b.t.fail(err)
		c.done = true
		return nil, nil
	}
	c.complete = len(c.rows) < c.page
	if len(c.rows) == 0 {
		c.done = true
		return nil, nil
	}
	return c.rows[0].k, c.rows[0].v
}
