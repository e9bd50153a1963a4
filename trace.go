package main

import (
	"context"
	"runtime/trace"
	"sync"
)

// actionTrace follows, while -trace is on, the action a user is sending:
// each is a task of the execution trace that logs its send, and every
// recipient logs its delivery to it, so that go tool trace shows who
// reached whom. The task ends once the user's step is over.
type actionTrace struct {
	ev     *Event
	task   *trace.Task
	region *trace.Region
}

// traceTasks maps an action's event to its task while -trace is on. It is
// never emptied: a recipient may apply the event at any time. A traced run
// is a short one.
var traceTasks sync.Map

// sending notes that user uid is sending ev; the first transmission of a
// room event starts the action's task.
func (a *actionTrace) sending(uid int32, ev *Event) {
	if ev == a.ev || ev.Kind > CloseEvent || !trace.IsEnabled() {
		return
	}
	a.end()
	ctx, task := trace.NewTask(context.Background(), "chatsim "+ev.Kind.String())
	trace.Logf(ctx, "send", "%s %s chat %s", uidName(uid), ev.Kind, ev.Room)
	traceTasks.Store(ev, ctx)
	a.ev, a.task, a.region = ev, task, trace.StartRegion(ctx, "fan-out")
}

// end ends the action's task, if one is under way.
func (a *actionTrace) end() {
	if a.task == nil {
		return
	}
	a.region.End()
	a.task.End()
	*a = actionTrace{}
}

// tracedDelivery logs user uid's delivery of ev to the task of the action
// that sent it, while -trace is on.
func tracedDelivery(uid int32, ev *Event) {
	if !trace.IsEnabled() {
		return
	}
	if ctx, ok := traceTasks.Load(ev); ok {
		trace.Log(ctx.(context.Context), "deliver", uidName(uid))
	}
}
