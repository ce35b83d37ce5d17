package recorder

type subscriber struct {
	filter Filter
	ch     chan Event
	left   int // events still to deliver; <= 0 means no limit
	closed bool
}

// Subscribe returns a channel of live events matching filter and a cancel
// function. The channel delivers up to n matching events (n <= 0: until
// cancelled) and is then closed; it is also closed by cancel and when Run
// returns (at once, if Run has already returned). The channel is bounded:
// events that arrive while it is full are dropped for this subscriber and
// counted in Stats.LostSubscriber, so a slow subscriber never stalls the
// agent. cancel may be called more than once. Events are shared: do not
// modify their Data.
func (r *Recorder) Subscribe(filter Filter, n int) (<-chan Event, func()) {
	size := subscriberBuffer
	if n > 0 && n < size {
		size = n
	}
	s := &subscriber{filter: filter, ch: make(chan Event, size), left: n}
	r.subMu.Lock()
	if r.subDone {
		s.closed = true
		close(s.ch)
	} else {
		r.subs[s] = struct{}{}
	}
	r.subMu.Unlock()
	cancel := func() {
		r.subMu.Lock()
		r.removeLocked(s)
		r.subMu.Unlock()
	}
	return s.ch, cancel
}

// Subscribers returns the number of live subscriptions.
func (r *Recorder) Subscribers() int {
	r.subMu.Lock()
	defer r.subMu.Unlock()
	return len(r.subs)
}

func (r *Recorder) removeLocked(s *subscriber) {
	if s.closed {
		return
	}
	s.closed = true
	close(s.ch)
	delete(r.subs, s)
}

// publish offers e to every matching subscriber without blocking.
func (r *Recorder) publish(e Event) {
	r.subMu.Lock()
	defer r.subMu.Unlock()
	for s := range r.subs {
		if !s.filter.Match(e) {
			continue
		}
		select {
		case s.ch <- e:
			if s.left > 0 {
				s.left--
				if s.left == 0 {
					r.removeLocked(s)
				}
			}
		default:
			r.lostSub.Add(1)
		}
	}
}

func (r *Recorder) closeSubscribers() {
	r.subMu.Lock()
	defer r.subMu.Unlock()
	r.subDone = true
	for s := range r.subs {
		r.removeLocked(s)
	}
}
